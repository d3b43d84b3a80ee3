"""The CPUs this process may use as it started. A server process pins itself to one (``server.cpu_affinity``,
app/server/options.py); work that lets go of the GIL for long, password hashing, goes back to all of them, and
never to more: a ``taskset`` or systemd ``CPUAffinity=`` limit holds."""

from __future__ import annotations

import os

_before_pinning: set[int] = set()


def note_before_pinning() -> None:
    """Remember this process's CPUs; call it before pinning."""
    if not _before_pinning:
        _before_pinning.update(os.sched_getaffinity(0))


def unpinned() -> set[int]:
    """The CPUs this process could use before it was pinned; the calling thread's own when it never was."""
    return set(_before_pinning) or os.sched_getaffinity(0)
