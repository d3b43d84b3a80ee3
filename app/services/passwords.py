"""Password hashing with Argon2id; parameters from ``auth.argon2_*``."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import configs


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> tuple[PasswordHasher, str]:
    """A hasher for these parameters, and a hash of nothing to verify against for unknown accounts."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher, hasher.hash("no account has this password")


def _current() -> tuple[PasswordHasher, str]:
    auth = configs.auth
    return _hasher(auth.argon2_time_cost, auth.argon2_memory_cost, auth.argon2_parallelism)


def hash_password(password: str) -> str:
    return _current()[0].hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (unknown account) it spends the same time and says no."""
    hasher, dummy = _current()
    try:
        return hasher.verify(password_hash or dummy, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than the configured ones."""
    return _current()[0].check_needs_rehash(password_hash)
