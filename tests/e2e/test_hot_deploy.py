"""hot_deploy.py restarts the server once per burst of saved changes and stops with it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import PROJECT_DIR, free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def hot_deploy(server_env, tmp_path):
    watched = tmp_path / "project"
    watched.mkdir()
    port = free_port()
    output = tmp_path / "hot_deploy.out"
    with output.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(PROJECT_DIR / "hot_deploy.py"), "--watch", str(watched),
                                    "--port", str(port)], cwd=PROJECT_DIR, env=server_env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/health/live"

    def pids() -> list[int]:
        return [int(p) for p in re.findall(r"started server pid (\d+)", output.read_text())]

    def serving() -> bool:
        return requests.get(url, timeout=1).status_code == 200

    process.output = lambda: output.read_text()
    yield process, watched, pids, serving
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # hot_deploy stops its server before exiting
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in pids():  # never leave a server behind, whatever happened above
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if b"tornado_server.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def test_a_saved_python_file_restarts_the_server_once(hot_deploy):
    process, watched, pids, serving = hot_deploy
    wait_until(serving, timeout=20)
    first = pids()
    assert len(first) == 1
    for i in range(3):  # one burst of saves
        (watched / "module.py").write_text(f"VALUE = {i}\n")
    (watched / ".module.py.swp").write_text("editor noise")
    wait_until(lambda: len(pids()) == 2, timeout=10)
    wait_until(serving, timeout=20)
    assert pids()[1] != first[0]


def test_ignored_paths_do_not_restart(hot_deploy):
    process, watched, pids, serving = hot_deploy
    wait_until(serving, timeout=20)
    for name in ("__pycache__", "instance", ".venv"):
        (watched / name).mkdir()
        (watched / name / "x.py").write_text("X = 1\n")
    (watched / "notes.txt").write_text("not code")
    (watched / "marker.py").write_text("M = 1\n")  # a watched change after the ignored ones
    wait_until(lambda: len(pids()) == 2, timeout=10)
    assert re.findall(r"changed (.*); restarting", process.output()) == ["marker.py"]


def test_sigterm_stops_hot_deploy_and_the_server(hot_deploy):
    process, watched, pids, serving = hot_deploy
    wait_until(serving, timeout=20)
    child = pids()[0]
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_server_that_died_on_a_syntax_error_comes_back_on_the_next_save(server_env, tmp_path):
    """The server imports its app from the watched directory; breaking and fixing that file is what a
    developer does."""
    watched = tmp_path / "project"
    watched.mkdir()
    factory = watched / "my_factory.py"
    good = "from app import create_app\n"
    factory.write_text(good)
    port = free_port()
    output = tmp_path / "hot_deploy.out"
    env = {**server_env, "PYTHONPATH": f"{watched}:{server_env['PYTHONPATH']}"}
    with output.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(PROJECT_DIR / "hot_deploy.py"), "--watch", str(watched),
                                    "--port", str(port), "--app", "my_factory:create_app"], cwd=PROJECT_DIR,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/health/live"
    try:
        wait_until(lambda: requests.get(url, timeout=1).status_code == 200, timeout=20)
        factory.write_text("def broken(:\n")
        wait_until(lambda: "SyntaxError" in output.read_text(), timeout=20)
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=1)
        factory.write_text(good)
        wait_until(lambda: requests.get(url, timeout=1).status_code == 200, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
