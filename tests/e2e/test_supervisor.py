"""supervisord.ini: supervisord runs every API process on its port, restarts a killed one, shuts them down; its
Celery worker runs what the API enqueues (jobs.backend = celery, on the real Redis) and a restart lets it finish;
each log line is written once, to supervisor's file of the process that logged it (no app.log).

The real file uses ports 5000/5001 and the project's instance/, which a developer's own supervisord may be
using, so each test renders a copy into its tmp_path with only the instance directory, the interpreter and the
base port replaced; everything else (program, restart and stop settings) is the file as shipped.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.celery_workers import broker_idle
from tests.fixtures.mail import GatedInbox, recipients
from tests.support import PROJECT_DIR, free_port, process_alive, wait_until

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def free_port_prefix() -> str:
    """Three digits P such that ports P00 and P01 are both free (the file's ports are "50%(process_num)02d")."""
    for _ in range(50):
        prefix = str(random.randint(200, 600))
        try:
            for port in (int(prefix + "00"), int(prefix + "01")):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return prefix
    raise AssertionError("no free port pair")


def render(instance: Path, prefix: str) -> str:
    """supervisord.ini with this test's instance directory, interpreter and base port."""
    config = (PROJECT_DIR / "supervisord.ini").read_text()
    for old, new in (("%(here)s/instance", str(instance)),
                     ("%(here)s/.venv/bin/python", sys.executable),
                     ("--port 50%(process_num)02d", f"--port {prefix}%(process_num)02d"),
                     ("%(here)s", str(PROJECT_DIR))):
        assert old in config, f"supervisord.ini no longer contains {old!r}: update this test"
        config = config.replace(old, new)
    return config


class Supervisor:
    def __init__(self, config: Path, env: dict[str, str], prefix: str, logs: Path) -> None:
        self.config = config
        self.env = env
        self.logs = logs  # supervisor's files: <process>.log, supervisord.log
        self.ports = [int(f"{prefix}0{n}") for n in (0, 1)]

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.config), *args], env=self.env,
                              capture_output=True, text=True, timeout=30)

    def all_running(self) -> bool:
        status = self.ctl("status")
        return status.returncode == 0 and status.stdout.count("RUNNING") == 4  # api-0, api-1, worker-0, beat

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).stdout.strip() or 0)

    def live(self, port: int) -> bool:
        return requests.get(f"http://127.0.0.1:{port}/api/health/live", timeout=2).status_code == 200


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def gated_smtp() -> Iterator[tuple[Controller, GatedInbox]]:
    """An SMTP server whose gate is open until a test closes it."""
    inbox = GatedInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.loop.call_soon_threadsafe(inbox.gate.set)
    yield controller, inbox
    controller.stop()


@pytest.fixture
def supervisor(server_env, real_redis_settings, gated_smtp, tmp_path) -> Iterator[Supervisor]:
    """supervisord started from the rendered file; shut down afterwards (the test may have done so already)."""
    instance = tmp_path / "instance"
    (instance / "logs").mkdir(parents=True)
    prefix = free_port_prefix()
    config = tmp_path / "supervisord.ini"
    config.write_text(render(instance, prefix))
    # As in production: migrations run once before the processes start, not in each of them.
    env = {**server_env, "REDIS_URL": real_redis_settings["redis"]["url"], "APP_DATABASE__AUTO_MIGRATE": "false",
           "APP_SMS__GATEWAY": "file", "APP_SMS__DAILY_CAP_PER_IP": "100000", "APP_JOBS__BACKEND": "celery",
           "APP_MAIL__SERVER": "127.0.0.1", "APP_MAIL__PORT": str(gated_smtp[0].port), "APP_MAIL__SUPPRESS": "false"}
    subprocess.run([sys.executable, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True,
                   capture_output=True, timeout=60)
    subprocess.run([str(BIN / "supervisord"), "-c", str(config)], env=env, check=True, timeout=30)
    pidfile = instance / "supervisord.pid"
    wait_until(pidfile.exists, timeout=10)
    supervisord = int(pidfile.read_text())
    sup = Supervisor(config, env, prefix, instance / "logs")
    try:
        wait_until(sup.all_running, timeout=30)
    except AssertionError:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((instance / "logs").iterdir()))
        sup.ctl("shutdown")
        raise AssertionError(f"not all RUNNING: {sup.ctl('status').stdout}\n{logs}") from None
    yield sup
    if process_alive(supervisord):
        sup.ctl("shutdown")
        wait_until(lambda: not process_alive(supervisord), timeout=40)


def test_supervisord_runs_every_process_restarts_a_killed_one_and_shutdown_stops_them(supervisor):
    """One supervisord for the whole life cycle: each start costs startsecs (2 s) plus a shutdown. A request's
    access line is written once, to api-1.log, and no process writes the app's own log file."""
    for port in supervisor.ports:
        wait_until(lambda port=port: supervisor.live(port), timeout=20)
    requests.get(f"http://127.0.0.1:{supervisor.ports[1]}/api/health/live", headers={"X-Request-ID": "once-only"},
                 timeout=2)
    access = "app.access [once-only]"
    wait_until(lambda: access in (supervisor.logs / "api-1.log").read_text(), timeout=5)
    ready = requests.get(f"http://127.0.0.1:{supervisor.ports[0]}/api/health", timeout=2).json()["data"]
    assert ready["redis"] == "ok"

    killed = supervisor.pid("api:api-0")
    os.kill(killed, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: supervisor.pid("api:api-0") not in (0, killed) and supervisor.live(supervisor.ports[0]),
               timeout=5)  # back and serving within 5 s
    print(f"killed process serving again after {time.monotonic() - killed_at:.2f} s")

    pids = [supervisor.pid(name) for name in ("api:api-0", "api:api-1", "worker:worker-0", "beat")]
    supervisord = int(supervisor.ctl("pid").stdout)
    assert supervisor.ctl("shutdown").returncode == 0
    wait_until(lambda: not any(process_alive(pid) for pid in [supervisord, *pids]), timeout=40)
    assert not any(port_open(port) for port in supervisor.ports)
    files = sorted(path.name for path in supervisor.logs.iterdir())
    assert files == ["api-0.log", "api-1.log", "beat.log", "supervisord.log", "worker-0.log"]
    assert [(supervisor.logs / name).read_text().count(access) for name in files] == [0, 1, 0, 0, 0]
    # The log.file of the environment supervisord started in: manage.py db upgrade wrote it, no supervised process.
    app_log = Path(supervisor.env["APP_LOG__FILE"]).read_text()
    assert not any(f"[{pid}]" in app_log for pid in pids) and "app.access" not in app_log


def test_a_process_killed_under_load_comes_back_and_no_answered_registration_is_lost(supervisor, database_url):
    """Clients register through both processes while one is killed with SIGKILL: requests to it may fail (nginx
    would retry them elsewhere), but every registration that was answered 201 is in the database."""
    outbox = Path(supervisor.env["APP_SMS__OUTBOX"])
    registered: list[str] = []
    failed: Counter[str] = Counter()
    stop = threading.Event()

    def code_for(phone: str) -> str:
        for line in reversed(outbox.read_text().splitlines()):
            message = json.loads(line)
            if message["to"] == phone:
                return str(message["code"])
        raise AssertionError(f"no code for {phone}")

    def register(worker: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            port = supervisor.ports[n % 2]
            phone = f"+86139{worker:02d}{n:06d}"
            base = f"http://127.0.0.1:{port}/api"
            try:
                sent = requests.post(f"{base}/common/sms/send", json={"phone": phone, "purpose": "register"},
                                     timeout=10)
                if sent.status_code != 200:
                    failed[f"send {sent.status_code}"] += 1
                    continue
                answer = requests.post(f"{base}/auth/register", timeout=10, json={
                    "phone": phone, "password": PASSWORD, "nickname": f"load {n}", "sms_code": code_for(phone)})
            except requests.RequestException as exc:
                failed[type(exc).__name__] += 1
                continue
            if answer.status_code == 201:
                registered.append(phone)
            else:
                failed[f"register {answer.status_code}"] += 1

    threads = [threading.Thread(target=register, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(registered) >= 10, timeout=60)
        killed = supervisor.pid("api:api-0")
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: supervisor.pid("api:api-0") not in (0, killed)
                   and supervisor.live(supervisor.ports[0]), timeout=10)  # about 3 s; more while 2 cores hash
        back_after = time.monotonic() - killed_at
        answered_before = len(registered)
        wait_until(lambda: len(registered) >= answered_before + 10, timeout=60)  # both serve again
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    print(f"killed process back in {back_after:.2f} s; {len(registered)} registered; failed: {dict(failed)}")
    assert set(failed) <= {"ConnectionError", "register 503", "send 503"}, failed
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = {row[0] for row in connection.execute(text("SELECT phone FROM users"))}
    finally:
        engine.dispose()
    assert set(registered) <= stored, sorted(set(registered) - stored)


def test_a_mail_the_api_accepts_is_sent_by_the_worker_even_across_a_worker_restart(supervisor, gated_smtp):
    """The worker is inside the SMTP conversation when `supervisorctl restart 'worker:*'` stops it: the warm shutdown
    lets the send finish (one RCPT, one mail), and the new worker answers a ping."""
    controller, inbox = gated_smtp
    env = supervisor.env
    subprocess.run([sys.executable, "manage.py", "create-admin", "--phone", "+8613800138000", "--nickname", "me",
                    "--email", "me@example.com", "--password", PASSWORD], cwd=PROJECT_DIR, env=env, check=True,
                   capture_output=True, timeout=60)
    controller.loop.call_soon_threadsafe(inbox.gate.clear)
    wait_until(lambda: supervisor.live(supervisor.ports[0]), timeout=20)
    answer = requests.post(f"http://127.0.0.1:{supervisor.ports[0]}/api/auth/password/forgot", timeout=10,
                           json={"email": "me@example.com"}, headers={"X-Request-ID": "supervised-mail"})
    assert answer.status_code == 200, answer.text
    wait_until(lambda: inbox.held, timeout=30)  # the supervised worker took the task and is sending

    old = supervisor.pid("worker:worker-0")
    restart = threading.Thread(target=lambda: supervisor.ctl("restart", "worker:*"))
    restart.start()
    wait_until(lambda: "STOPPING" in supervisor.ctl("status", "worker:*").stdout, timeout=10)
    time.sleep(1)  # it stays in its warm shutdown while the task runs
    assert process_alive(old) and inbox.messages == []
    controller.loop.call_soon_threadsafe(inbox.gate.set)
    restart.join(90)
    assert not restart.is_alive() and supervisor.pid("worker:worker-0") not in (0, old)

    assert (len(inbox.messages), inbox.held) == (1, 1)  # finished by the old worker, not sent again by the new
    assert recipients(inbox) == {"me@example.com": 1}
    settings = {"redis": {"url": env["REDIS_URL"], "prefix": env["APP_REDIS__PREFIX"]}}
    wait_until(lambda: broker_idle(settings), timeout=10)
    ping = subprocess.run([sys.executable, "manage.py", "jobs-ping", "worker-0@%h", "--timeout", "20"],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert ping.returncode == 0 and "worker-0@" in ping.stdout, ping.stdout + ping.stderr
    # The request id travelled with the task, whose lines (from a pool process) supervisor captured.
    assert "[supervised-mail]" in (supervisor.logs / "worker-0.log").read_text()
