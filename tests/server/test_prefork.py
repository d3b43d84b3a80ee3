"""fork_children in a process of its own: stops, respawns and exit statuses, with children that only wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PROJECT_DIR, process_alive, wait_until

SUPERVISOR = """
import os, signal, sys, time
from pathlib import Path
from app.server.options import StartupError
from app.server.prefork import fork_children

out, mode = Path(sys.argv[1]), sys.argv[2]

def start(slot):
    if mode == "bad-stop":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(3))
    (out / f"{slot}-{os.getpid()}").touch()
    if mode == "startup-error" and slot == 1:
        raise StartupError("slot 1 cannot serve")
    if mode == "crash-once" and slot == 0 and not (out / "crashed").exists():
        (out / "crashed").touch()
        raise RuntimeError("boom")
    while True:
        time.sleep(1)

sys.exit(fork_children(2, start))
"""


class Supervisor:
    def __init__(self, out: Path, mode: str) -> None:
        self.out = out
        self.process = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(out), mode], cwd=PROJECT_DIR,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)

    def started(self) -> dict[str, int]:
        """Slot-pid marks written by children so far: {"0-1234": 1234, …}."""
        return {p.name: int(p.name.split("-")[1]) for p in self.out.iterdir() if "-" in p.name}


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator:
    made: list[Supervisor] = []

    def start(mode: str) -> Supervisor:
        made.append(Supervisor(tmp_path, mode))
        return made[-1]

    yield start
    for each in made:
        if each.process.poll() is None:
            os.killpg(each.process.pid, signal.SIGKILL)
        each.process.communicate()


def test_sigterm_stops_every_child_and_exits_0(supervisor) -> None:
    running = supervisor("wait")
    children = wait_until(lambda: marks if len(marks := running.started()) == 2 else None)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(15) == 0
    assert not any(process_alive(pid) for pid in children.values())


def test_a_startup_error_in_one_child_stops_the_others_and_exits_2(supervisor) -> None:
    running = supervisor("startup-error")
    assert running.process.wait(15) == 2
    assert "tornado_server.py: slot 1 cannot serve" in running.process.stderr.read()
    assert not any(process_alive(pid) for pid in running.started().values())


def test_a_crashed_child_is_replaced_in_its_slot(supervisor) -> None:
    running = supervisor("crash-once")
    marks = wait_until(lambda: marks if len(marks := running.started()) == 3 else None)
    assert sorted(name.split("-")[0] for name in marks) == ["0", "0", "1"]
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(15) == 0


def test_a_child_that_fails_its_stop_makes_the_exit_status_1(supervisor) -> None:
    running = supervisor("bad-stop")
    wait_until(lambda: len(running.started()) == 2)
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(15) == 1
