"""Forked server processes: one per slot, respawned when one crashes, all stopped by SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from app.server.options import EXIT_STARTUP, StartupError

log = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# How a child ends when told to stop: 0 after a graceful stop, or killed by the signal itself when it
# came before the child installed its handlers (still building its app, nothing in flight).
CLEAN_STOPS = {0, -signal.SIGTERM, -signal.SIGINT}


def fork_children(count: int, start: Callable[[int], None]) -> int:
    """Fork ``count`` children running ``start(slot)`` (slot 0 … count-1); forward SIGTERM/SIGINT; respawn crashed ones.

    Returns the exit status for the parent: 0 when every child stopped cleanly on request.
    """
    children: dict[int, int] = {}
    asked_to_stop: set[int] = set()  # only their exit codes decide the parent's
    stopping = False

    def spawn(slot: int) -> None:
        # Stop signals wait until the new child is in ``children``, so forward() reaches it too.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            code = 0
            try:
                start(slot)
            except StartupError as exc:
                print(f"tornado_server.py: {exc}", file=sys.stderr, flush=True)
                code = EXIT_STARTUP
            except BaseException:
                log.exception("server process failed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = slot
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):  # already reaped: it died before the stop
                os.kill(pid, signal.SIGTERM)
                asked_to_stop.add(pid)

    signal.signal(signal.SIGTERM, forward)  # before the first fork: a stop must never orphan a child
    signal.signal(signal.SIGINT, forward)
    for slot in range(count):
        spawn(slot)

    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        slot = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        # The stop signal's handler may run between os.wait() reaping a child that had just died and this check.
        if pid in asked_to_stop:
            status = status or (0 if code in CLEAN_STOPS else 1)
        elif stopping:
            log.error("server process %d exited with %s before the stop reached it", pid, code)
        elif code == EXIT_STARTUP:
            forward(signal.SIGTERM, None)
            status = EXIT_STARTUP
        else:
            log.error("server process %d exited with %s; starting another", pid, code)
            time.sleep(0.5)
            if not stopping:  # a stop signal may have come during the pause
                spawn(slot)
    return status
