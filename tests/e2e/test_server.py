"""tornado_server.py as a real process: HTTP, HTTPS, graceful SIGTERM, forked children, refusals.

Which process served a request is read from the server's own log: every line carries ``[pid]`` and the
request id that the response returns in ``X-Request-ID``. Forked children are found under
``/proc/<parent>/task/*/children``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from certificates import make_certificate
from sqlalchemy import create_engine, inspect, text

from tests.fixtures.live_servers import LiveServer
from tests.support import PROJECT_DIR, free_port, process_alive, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("each_http")]

PROBE_APP = ("--app", "probe_api:create_probe_app")
SERVER = PROJECT_DIR / "tornado_server.py"


# --- helpers -----------------------------------------------------------------------------------


def child_pids(pid: int) -> set[int]:
    """The live children of process ``pid``."""
    children: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as file:
            children |= {int(p) for p in file.read().split()}
    return {child for child in children if process_alive(child)}


def server_processes(port: int) -> set[int]:
    """Live tornado_server.py processes of this test session (same session id) started with ``--port port``.

    Forked children share their parent's command line and session, and keep both when orphaned.
    """
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            same_session = os.getsid(int(entry)) == os.getsid(0)
        except OSError:
            continue
        if str(SERVER).encode() not in argv or b"--port" not in argv:
            continue
        at = argv.index(b"--port")
        if argv[at + 1:at + 2] == [str(port).encode()] and same_session and process_alive(int(entry)):
            found.add(int(entry))
    return found


def reaped(pid: int) -> bool:
    """Whether ``pid`` is gone, its parent having collected its exit status (a zombie is not reaped)."""
    return not os.path.exists(f"/proc/{pid}")


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def served_by(server: LiveServer, response: requests.Response) -> int:
    """The PID of the process that wrote the access line of ``response``'s request."""
    request_id = re.escape(response.headers["X-Request-ID"])
    found = wait_until(lambda: re.search(rf"\[(\d+)\] app\.access \[{request_id}\]", server.output()),
                       timeout=5)  # log lines are written by a background thread, just after the response
    return int(found.group(1))


def two_children(server: LiveServer) -> set[int]:
    """Wait until the parent has forked both children; their PIDs."""
    return wait_until(lambda: pids if len(pids := child_pids(server.process.pid)) == 2 else None)


def run_server(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run tornado_server.py to its end (for the refusals, which exit at once); a server that keeps running
    fails the test and is killed with every process it forked."""
    command = [sys.executable, str(SERVER), *args]
    with subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError("the server did not exit by itself") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def live_server(live_server: Any) -> Iterator[Any]:
    """conftest's live_server, plus a check that no process of a stopped server (a forked child) lives on."""
    servers: list[LiveServer] = []

    def start(*args: str, **kwargs: Any) -> LiveServer:
        server = live_server(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    leftovers = set()
    for server in servers:
        server.stop()
        leftovers |= server_processes(server.port)
    for pid in leftovers:  # forked by a server this test started
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"server processes outlived their parent: {sorted(leftovers)}"


@pytest.fixture
def real_redis_env(real_redis_settings: dict) -> dict[str, str]:
    """Environment for several processes: a real Redis (server_env already gives this test's prefix)."""
    return {"REDIS_URL": real_redis_settings["redis"]["url"]}


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    return make_certificate(tmp_path)


# --- HTTP --------------------------------------------------------------------------------------


def test_health_answers_200_with_the_success_envelope(live_server: Any) -> None:
    server = live_server()
    response = requests.get(f"{server.url}/api/health", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-ID"]
    body = response.json()
    assert body["code"] == 200 and body["status"] == "SUCCESS" and isinstance(body["message"], str)
    assert body["data"]["database"] == "ok" and body["data"]["redis"] == "ok" and body["data"]["version"]


def test_what_start_up_made_is_left_out_of_garbage_collections(live_server: Any) -> None:
    """A full collection walks only what requests made: start-up's objects are frozen (gc.freeze)."""
    server = live_server(*PROBE_APP)
    counts = requests.get(f"{server.url}/api/probe/gc", timeout=5).json()["data"]
    assert counts["frozen"] > 50_000 and counts["tracked"] < counts["frozen"] / 4, counts


def test_a_204_has_no_content_length_and_the_connection_serves_on(live_server: Any, test_settings: dict) -> None:
    server = live_server()
    from app import create_app

    app = create_app(test_settings)
    with app.app_context():
        from app.extensions import db
        from app.services.users import create_user

        create_user("+8613800138000", "correct horse battery", "n")
        db.engine.dispose()
    login = {"account": "+8613800138000", "password": "correct horse battery"}
    first, second = (requests.post(f"{server.url}/api/auth/login", json=login, timeout=10).json()["data"]["token"]
                     for _ in range(2))
    mine = requests.get(f"{server.url}/api/auth/sessions", headers={"token": second}, timeout=5).json()["data"]
    other = next(s["id"] for s in mine if not s["current"])

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)  # one keep-alive connection
    connection.request("DELETE", f"/api/auth/sessions/{other}", headers={"token": second})
    ended = connection.getresponse()
    assert ended.status == 204 and ended.read() == b""
    assert ended.getheader("Content-Length") is None  # RFC 9110 8.6: never on a 204
    connection.request("GET", "/api/health/live")
    assert connection.getresponse().status == 200
    assert requests.get(f"{server.url}/api/users/me", headers={"token": first}, timeout=5).status_code == 401


def test_the_swagger_ui_url_printed_at_start_serves_swagger_ui(live_server: Any) -> None:
    server = live_server()
    printed = re.search(r"Swagger UI: (\S+)", server.output())
    assert printed, server.output()
    assert printed.group(1) == f"http://127.0.0.1:{server.port}/api/"
    response = requests.get(printed.group(1), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "swagger-ui" in response.text and "swagger.json" in response.text


def test_migrations_are_applied_at_start(live_server: Any, database_url: str) -> None:
    from alembic.script import ScriptDirectory

    server = live_server()
    assert requests.get(f"{server.url}/api/health", timeout=5).json()["data"]["database"] == "ok"
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert {"users", "files"} <= tables
    assert revision == ScriptDirectory(str(PROJECT_DIR / "migrations")).get_current_head()


# --- HTTPS -------------------------------------------------------------------------------------


def test_https_is_served_with_the_configured_certificate(live_server: Any, certificate: tuple[str, str]) -> None:
    certfile, keyfile = certificate
    server = live_server(env={"APP_CERT__CERTFILE": certfile, "APP_CERT__KEYFILE": keyfile},
                         scheme="https", verify=certfile)
    response = requests.get(f"{server.url}/api/health", verify=certfile, timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "SUCCESS"
    assert f"Swagger UI: https://127.0.0.1:{server.port}/api/" in server.output()


def test_plain_http_to_the_https_port_fails(live_server: Any, certificate: tuple[str, str]) -> None:
    certfile, keyfile = certificate
    server = live_server(env={"APP_CERT__CERTFILE": certfile, "APP_CERT__KEYFILE": keyfile},
                         scheme="https", verify=certfile)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/api/health/live", timeout=5)
    assert requests.get(f"{server.url}/api/health/live", verify=certfile, timeout=5).status_code == 200


@pytest.mark.parametrize("setting", ["APP_CERT__CERTFILE", "APP_CERT__KEYFILE"])
def test_only_one_of_certfile_and_keyfile_is_refused(server_env: dict[str, str], certificate: tuple[str, str],
                                                     setting: str) -> None:
    path = certificate[0] if setting == "APP_CERT__CERTFILE" else certificate[1]
    result = run_server({**server_env, setting: path}, "--port", str(free_port()))
    assert result.returncode == 2
    assert "set both cert.certfile and cert.keyfile" in result.stderr


# --- graceful stop -----------------------------------------------------------------------------


def test_sigterm_finishes_a_slow_request_while_refusing_new_connections_then_exits_0(live_server: Any) -> None:
    server = live_server(*PROBE_APP)
    result: dict[str, Any] = {}

    def slow_request() -> None:
        result["response"] = requests.get(f"{server.url}/api/probe/slow?seconds=2", timeout=15)

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: "slow request started" in server.output(), timeout=5)
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: not accepts(server.port), timeout=5)
    assert thread.is_alive() and server.process.poll() is None  # refused while the request still runs
    thread.join(15)
    assert result["response"].status_code == 200
    assert result["response"].json()["data"] == "done"
    assert server.process.wait(15) == 0


def test_sigterm_waits_for_accepted_background_tasks(live_server: Any, tmp_path: Path) -> None:
    done = tmp_path / "task-done"
    server = live_server(*PROBE_APP)
    response = requests.post(f"{server.url}/api/probe/task", params={"seconds": "1", "path": str(done)}, timeout=5)
    assert response.status_code == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert done.read_text() == "done"


def test_a_request_running_past_the_shutdown_timeout_does_not_hold_the_process(live_server: Any) -> None:
    server = live_server(*PROBE_APP, env={"APP_SERVER__SHUTDOWN_TIMEOUT": "1"})
    outcome: list[BaseException] = []

    def hung_request() -> None:
        try:
            requests.get(f"{server.url}/api/probe/slow?seconds=30", timeout=40)
        except requests.ConnectionError as exc:  # cut when the process exits: expected
            outcome.append(exc)

    thread = threading.Thread(target=hung_request, daemon=True)
    thread.start()
    wait_until(lambda: "slow request started" in server.output(), timeout=5)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert time.monotonic() - signalled < 5
    assert "still running after 1s" in server.output()
    thread.join(5)
    assert outcome, "the hung request got an answer"


def test_requests_still_queued_at_the_shutdown_timeout_are_dropped_without_an_error(live_server: Any) -> None:
    """One request thread, held by a slow request: the others wait in the pool's queue, which the stop past its
    timeout cancels. The app never ran them, so nothing says it failed (found by an outside review)."""
    server = live_server(*PROBE_APP, env={"APP_SERVER__SHUTDOWN_TIMEOUT": "1", "APP_SERVER__THREADS": "1"})

    def hung_request() -> None:
        with contextlib.suppress(requests.ConnectionError):  # cut when the process exits: expected
            requests.get(f"{server.url}/api/probe/slow?seconds=30", timeout=40)

    threads = [threading.Thread(target=hung_request, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: "slow request started" in server.output(), timeout=5)
    connections = Path(f"/proc/{server.process.pid}/net/tcp")  # the three are in (state 01: established)
    wait_until(lambda: sum(1 for line in connections.read_text().splitlines()
                           if f":{server.port:04X} " in line and line.split()[3] == "01") >= 3, timeout=5)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert "still running after 1s" in server.output()
    assert "the WSGI app failed" not in server.output() and "CancelledError" not in server.output()


# --- several processes -------------------------------------------------------------------------


def test_two_processes_share_the_port_and_both_serve(live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env)
    children = two_children(server)
    statuses: list[int] = []
    pids: set[int] = set()
    deadline = time.monotonic() + 10  # the second child may still be opening its socket at first
    while (len(statuses) < 40 or pids != children) and time.monotonic() < deadline:
        response = requests.get(f"{server.url}/api/health", timeout=5)  # a new connection each time
        statuses.append(response.status_code)
        pids.add(served_by(server, response))
    assert set(statuses) == {200}
    assert pids == children


def test_sigterm_to_the_parent_stops_every_child(live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env)
    children = two_children(server)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert not any(process_alive(pid) for pid in children)
    assert not server_processes(server.port)
    assert not accepts(server.port)


def test_sigterm_while_children_start_exits_0(live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env, wait=False)
    children = two_children(server)  # forked; each is still building its app
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0, server.output()
    assert not any(process_alive(pid) for pid in children)
    assert not server_processes(server.port)


def test_a_killed_child_is_respawned(live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env)
    children = two_children(server)
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    # Connections already queued on the victim's own socket die with it; once it is gone, the other answers.
    wait_until(lambda: reaped(victim))
    assert requests.get(f"{server.url}/api/health/live", timeout=5).status_code == 200
    replaced = wait_until(lambda: pids - children if len(pids := child_pids(server.process.pid)) == 2 else None)
    (newcomer,) = replaced

    def newcomer_served() -> bool:
        return served_by(server, requests.get(f"{server.url}/api/health/live", timeout=5)) == newcomer

    wait_until(newcomer_served, timeout=10, interval=0)


def test_sigterm_right_after_a_child_died_stops_the_server(live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env)
    children = two_children(server)
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: reaped(victim))  # the parent saw it die and pauses before starting another
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert not server_processes(server.port)


def test_a_second_server_on_a_port_held_by_forked_children_is_refused(
        live_server: Any, real_redis_env: dict[str, str], server_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env)
    result = run_server({**server_env, **real_redis_env}, "--port", str(server.port), "--processes", "2")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr


# --- CPU affinity ------------------------------------------------------------------------------

ALLOWED_CPUS = sorted(os.sched_getaffinity(0))  # what this test session (and the servers it starts) may use


def thread_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of process ``pid`` (one set when they all agree)."""
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


def test_forked_processes_each_run_on_their_own_cpu_also_when_respawned(
        live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", env=real_redis_env)
    for _ in range(8):  # request threads start on demand: they must be pinned too
        assert requests.get(f"{server.url}/api/health/live", timeout=5).status_code == 200
    children = two_children(server)
    placed = {pid: thread_cpus(pid) for pid in children}
    expected = {frozenset({ALLOWED_CPUS[0]}), frozenset({ALLOWED_CPUS[1 % len(ALLOWED_CPUS)]})}
    assert all(len(cpus) == 1 for cpus in placed.values()), placed
    assert {next(iter(cpus)) for cpus in placed.values()} == expected
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    (newcomer,) = wait_until(lambda: pids - children if len(pids := child_pids(server.process.pid)) == 2 else None)
    assert wait_until(lambda: thread_cpus(newcomer) == placed[victim] or None, timeout=10)


def test_a_single_process_runs_on_the_cpu_given_by_cpu_and_is_unpinned_without_it(live_server: Any) -> None:
    pinned = live_server("--cpu", "1")
    unpinned = live_server()
    assert thread_cpus(pinned.process.pid) == {frozenset({ALLOWED_CPUS[1 % len(ALLOWED_CPUS)]})}
    assert thread_cpus(unpinned.process.pid) == {frozenset(ALLOWED_CPUS)}


def test_cpu_affinity_off_pins_nothing(live_server: Any, real_redis_env: dict[str, str]) -> None:
    server = live_server("--processes", "2", "--cpu", "1", env={**real_redis_env, "APP_SERVER__CPU_AFFINITY": "false"})
    for pid in [server.process.pid, *two_children(server)]:
        assert thread_cpus(pid) == {frozenset(ALLOWED_CPUS)}


# --- refusals ----------------------------------------------------------------------------------


def test_several_processes_on_memory_redis_are_refused(server_env: dict[str, str]) -> None:
    result = run_server({**server_env, "REDIS_URL": "memory://"}, "--port", str(free_port()), "--processes", "2")
    assert result.returncode == 2
    assert "memory://" in result.stderr


def test_production_with_the_default_secret_is_refused(server_env: dict[str, str]) -> None:
    env = {**server_env, "APP_ENV": "production", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    del env["SECRET_KEY"]
    result = run_server(env, "--port", str(free_port()))
    assert result.returncode == 2
    assert "refusing to start in production" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_a_setting_of_the_wrong_type_is_refused_naming_it(server_env: dict[str, str]) -> None:
    result = run_server({**server_env, "APP_MAIL__ADMINS": '["ops@example.com", 42]'}, "--port", str(free_port()))
    assert result.returncode == 2
    assert "'mail.admins' in the environment must be list of str" in result.stderr


def test_a_port_in_use_is_refused(server_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server(server_env, "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
