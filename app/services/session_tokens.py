"""The tokens of a session: what they look like, and how the server tells one it issued from a guess.

An access token is ``<session id>.<generation>.<secret>``, a refresh token ``<session id>.<generation>.<secret>.<mac>``.
A token names its session, so checking it reads the session's own hash and no key per token exists; each refresh
starts the next generation of the session's pair. Secrets are 256 random bits; the session hash keeps a digest of
each current token (the first 128 bits of its SHA-256), never a token.

The refresh token's mac is an HMAC-SHA256 (128 bits of it) of the rest of the token under a key derived from
SECRET_KEY (HKDF, as app.services.sealing does). It lets the server recognise every refresh token it ever issued
for a session, in constant memory: one of an earlier generation coming back is a retired token (a theft), however
many refreshes ago it was retired, and a guess is told apart from it without touching Redis. Neither Redis nor
SECRET_KEY alone gives a usable token; with both, one could forge only retired tokens (ending sessions), never a
current one. Changing SECRET_KEY makes every refresh token unknown (a 401; access tokens run out).

Every part is checked against a strict pattern before any of it reaches a key name. A token of the form issued
before this layout (43 URL-safe characters, no dots) is ``legacy``: app.services.legacy_sessions serves those until
the last such session ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import configs

_PARTS = r"([A-Za-z0-9_-]{16})\.([1-9][0-9]{0,8})\.([A-Za-z0-9_-]{43})"
_ACCESS = re.compile(_PARTS)
_REFRESH = re.compile(_PARTS + r"\.([A-Za-z0-9_-]{22})")
_LEGACY = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class TokenParts:
    session_id: str
    generation: int


def new_session_id() -> str:
    return secrets.token_urlsafe(12)  # 16 characters


def parse_access(token: str) -> TokenParts | None:
    """The parts of an access token of the current form; None for anything else."""
    matched = _ACCESS.fullmatch(token)
    return TokenParts(matched[1], int(matched[2])) if matched else None


def parse_refresh(token: str) -> TokenParts | None:
    """The parts of a refresh token of the current form that the server issued; None for anything else (a guess
    or a forgery included)."""
    matched = _REFRESH.fullmatch(token)
    if matched is None:
        return None
    body = token[:-23]
    return TokenParts(matched[1], int(matched[2])) if hmac.compare_digest(matched[4], _mac(body)) else None


def is_legacy(token: str) -> bool:
    """Whether ``token`` has the form tokens had before they named their session."""
    return _LEGACY.fullmatch(token) is not None


def digest(token: str) -> str:
    """What the session hash keeps of a token: 128 bits of its SHA-256, URL-safe base64 (22 characters)."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()[:16]).rstrip(b"=").decode()


def access_token(session_id: str, generation: int) -> str:
    return f"{session_id}.{generation}.{secrets.token_urlsafe(32)}"


def refresh_token(session_id: str, generation: int) -> str:
    body = f"{session_id}.{generation}.{secrets.token_urlsafe(32)}"
    return f"{body}.{_mac(body)}"


@lru_cache(maxsize=4)
def _refresh_key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"session-refresh-tokens").derive(secret_key.encode())


def _mac(body: str) -> str:
    mac = hmac.digest(_refresh_key(configs.app.secret_key), body.encode(), "sha256")[:16]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
