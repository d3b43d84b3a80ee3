"""Secrets at rest under SECRET_KEY: Fernet (AES-128-CBC + HMAC-SHA256) with a key derived per purpose by HKDF.

What is sealed cannot be read or changed with a copy of the database or of Redis alone; changing SECRET_KEY makes
everything sealed unreadable (``InvalidToken``).
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import configs


@lru_cache(maxsize=16)
def _box(secret_key: str, purpose: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(purpose: str, text: str) -> str:
    """``text`` encrypted and authenticated under the key for ``purpose`` (e.g. ``"totp-secret"``)."""
    return _box(configs.app.secret_key, purpose).encrypt(text.encode()).decode()


def unseal(purpose: str, token: str) -> str:
    """What ``seal(purpose, …)`` sealed; ``cryptography.fernet.InvalidToken`` when it was not, or was changed."""
    return _box(configs.app.secret_key, purpose).decrypt(token.encode()).decode()
