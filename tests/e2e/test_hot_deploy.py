"""hot_deploy.py restarts its server once per burst of saved changes, brings back a dead one, stops with it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support import PROJECT_DIR, free_port, process_alive, wait_until

pytestmark = pytest.mark.e2e


class HotDeploy:
    """A hot_deploy.py process watching a temporary directory, its server on a free port."""

    def __init__(self, env: dict[str, str], watched: Path, out: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/health/live"
        self.out = out
        with out.open("wb") as stream:
            self.process = subprocess.Popen(
                [sys.executable, str(PROJECT_DIR / "hot_deploy.py"), "--watch", str(watched),
                 "--port", str(self.port), *args],
                cwd=PROJECT_DIR, env=env, stdout=stream, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def server_pids(self) -> list[int]:
        """Every server pid hot_deploy reported starting, oldest first."""
        return [int(pid) for pid in re.findall(r"started server pid (\d+)", self.output())]

    def children(self) -> set[int]:
        """The live children of hot_deploy, from /proc."""
        pids: set[int] = set()
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                pids.update(int(pid) for pid in (task / "children").read_text().split())
        return pids

    def serving(self) -> bool:
        return requests.get(self.url, timeout=1).status_code == 200


@pytest.fixture
def start_hot_deploy(server_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., HotDeploy]]:
    """``start_hot_deploy(*server_args, env=...)``: hot_deploy.py watching tmp_path/project; stopped afterwards."""
    watched = tmp_path / "project"
    watched.mkdir()
    started: list[HotDeploy] = []

    def start(*args: str, env: dict[str, str] | None = None) -> HotDeploy:
        hot = HotDeploy({**server_env, **(env or {})}, watched, tmp_path / f"hot_deploy-{len(started)}.out", *args)
        started.append(hot)
        return hot

    yield start
    for hot in started:
        if hot.process.poll() is None:
            hot.process.send_signal(signal.SIGTERM)  # hot_deploy stops its server before exiting
            try:
                hot.process.wait(30)
            except subprocess.TimeoutExpired:
                hot.process.kill()
                hot.process.wait()
        for pid in hot.server_pids():  # never leave a server of ours behind, whatever happened above
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if b"tornado_server.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


def test_a_burst_of_saves_restarts_the_server_once_and_sigterm_stops_both(start_hot_deploy, tmp_path):
    hot = start_hot_deploy()
    watched = tmp_path / "project"
    wait_until(hot.serving, timeout=20)
    [first] = hot.server_pids()
    assert hot.children() == {first}

    for name in ("__pycache__", "instance", ".venv", ".git"):  # ignored, saved in the same burst
        (watched / name).mkdir()
        (watched / name / "x.py").write_text("X = 1\n")
    (watched / ".module.py.swp").write_text("editor noise")
    (watched / "notes.txt").write_text("not code")
    began = time.monotonic()
    for i in range(10):  # ten saves within 200 ms: one restart
        (watched / "module.py").write_text(f"VALUE = {i}\n")
        time.sleep(0.018)
    assert time.monotonic() - began < 0.25

    wait_until(lambda: len(hot.server_pids()) == 2, timeout=10)  # a new server (how fast is the bench's job)
    wait_until(hot.serving, timeout=20)
    second = hot.server_pids()[1]
    assert second != first and not process_alive(first)
    assert hot.children() == {second}
    assert re.findall(r"changed (.*); restarting", hot.output()) == ["module.py"]

    (watched / "logging.ini").write_text("[loggers]\n")  # one save of a watched non-Python file
    wait_until(lambda: len(hot.server_pids()) == 3, timeout=10)
    wait_until(hot.serving, timeout=20)
    assert re.findall(r"changed (.*); restarting", hot.output()) == ["module.py", "logging.ini"]

    hot.process.send_signal(signal.SIGTERM)
    assert hot.process.wait(30) == 0
    assert not any(process_alive(pid) for pid in hot.server_pids())
    assert len(hot.server_pids()) == 3  # each burst restarted it once, nothing after


def test_a_server_that_died_on_a_syntax_error_comes_back_on_the_next_save(start_hot_deploy, server_env, tmp_path):
    """The server imports its app factory from the watched directory; breaking and fixing that file is what a
    developer does."""
    factory = tmp_path / "project" / "my_factory.py"
    good = "from app import create_app\n"
    factory.write_text(good)
    hot = start_hot_deploy("--app", "my_factory:create_app",
                           env={"PYTHONPATH": f"{factory.parent}{os.pathsep}{server_env['PYTHONPATH']}"})
    wait_until(hot.serving, timeout=20)

    factory.write_text("def broken(:\n")
    wait_until(lambda: "server exited with 1" in hot.output(), timeout=20)
    assert "SyntaxError" in hot.output()
    with pytest.raises(requests.ConnectionError):
        hot.serving()

    factory.write_text(good)
    wait_until(hot.serving, timeout=20)
    assert len(hot.server_pids()) == 3


def test_a_project_with_a_large_venv_restarts_on_saves_in_old_and_new_subdirectories(start_hot_deploy, tmp_path):
    """A real .venv holds thousands of directories: watched, their events overflowed inotify's queue and no save
    ever restarted the server. Ignored directories are not watched at all, and a package made after the start is."""
    watched = tmp_path / "project"
    for n in range(12000):
        (watched / ".venv" / "lib" / f"package{n}").mkdir(parents=True)
    (watched / "app").mkdir()
    hot = start_hot_deploy()
    wait_until(hot.serving, timeout=20)

    (watched / "app" / "models.py").write_text("X = 1\n")
    wait_until(lambda: len(hot.server_pids()) == 2, timeout=10)
    wait_until(hot.serving, timeout=20)

    (watched / "newpkg").mkdir()
    module = watched / "newpkg" / "mod.py"

    def saved_and_restarted() -> bool:  # the new directory's watch starts a moment after it appears
        module.write_text(f"X = {time.monotonic()}\n")
        return len(hot.server_pids()) >= 3

    wait_until(saved_and_restarted, timeout=15, interval=0.5)
    assert "overflow" not in hot.output().lower()
