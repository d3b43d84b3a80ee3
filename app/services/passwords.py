"""Password hashing with Argon2id; parameters from ``auth.argon2_*``.

Hashing is slow on purpose (about 0.3 s of CPU with the defaults), so it runs on a small pool of threads per
process whose scheduling priority is lowered (nice 19; on Linux niceness is per thread, and Argon2's own lane
threads inherit it): a burst of logins then takes spare CPU only, and every other request keeps its latency.
At most ``HASH_THREADS`` hashes run at once per process; more wait their turn without using CPU. The hashing
threads may run on any CPU, even in a server process pinned to one (``server.cpu_affinity``): a hash lets go of
the GIL, and pinned, the logins that one process took waited for each other while another CPU had room (half the
logins a second in `make bench` when the connections fell unevenly).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import configs
from app.cpus import unpinned

HASH_THREADS = 2
T = TypeVar("T")
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the pid that made it, the pool)
_pool_lock = threading.Lock()


def _start_hashing_thread() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: hash at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or a container forbids it: stay where it is
        os.sched_setaffinity(0, unpinned())


def _in_pool(work: Callable[..., T], *args: object) -> T:
    """Run ``work`` on this process's hashing threads (a forked child makes its own pool) and wait for it."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(HASH_THREADS, "argon2", initializer=_start_hashing_thread))
        pool = _pool[1]
    return pool.submit(work, *args).result()


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> tuple[PasswordHasher, str]:
    """A hasher for these parameters, and a hash of nothing to verify against for unknown accounts."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher, hasher.hash("no account has this password")


def _current() -> tuple[PasswordHasher, str]:
    auth = configs.auth
    return _hasher(auth.argon2_time_cost, auth.argon2_memory_cost, auth.argon2_parallelism)


def hash_password(password: str) -> str:
    return _in_pool(_current()[0].hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (unknown account) it spends the same time and says no."""
    hasher, dummy = _current()
    try:
        return _in_pool(hasher.verify, password_hash or dummy, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the configured ones."""
    return _current()[0].check_needs_rehash(password_hash)
