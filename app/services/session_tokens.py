"""The tokens of a session: what they look like, and how the server tells one it issued from a guess.

A token is ``<session id>.<generation>.<secret>``. It names its session, so checking it reads the session's own
hash and no key per token exists. Each refresh starts the next generation of the session's pair.

- The access token's secret is random; the session hash keeps a digest of the whole token (the first 128 bits of
  its SHA-256) and when it stops being accepted.
- The refresh token's secret is derived: HMAC-SHA256 of ``<session id>.<generation>.<salt>`` under a key derived
  from SECRET_KEY (HKDF, as app.services.sealing does), the salt random per session and kept in its hash. So the
  server recognises every refresh token it ever issued for a session, the current one and each retired one, in
  constant memory, and a retired one coming back (a theft) ends the session however many refreshes ago it was
  retired. Forging one needs both SECRET_KEY and the session's salt from Redis; changing SECRET_KEY retires every
  refresh token.

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

_TOKEN = re.compile(r"([A-Za-z0-9_-]{16})\.([1-9][0-9]{0,8})\.([A-Za-z0-9_-]{43})")
_LEGACY = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class TokenParts:
    session_id: str
    generation: int
    secret: str


def new_session_id() -> str:
    return secrets.token_urlsafe(12)  # 16 characters


def new_salt() -> str:
    return secrets.token_urlsafe(12)


def parse(token: str) -> TokenParts | None:
    """The parts of a token of the current form; None for anything else."""
    matched = _TOKEN.fullmatch(token)
    if matched is None:
        return None
    return TokenParts(matched[1], int(matched[2]), matched[3])


def is_legacy(token: str) -> bool:
    """Whether ``token`` has the form tokens had before they named their session."""
    return _LEGACY.fullmatch(token) is not None


def digest(token: str) -> str:
    """What the session hash keeps of an access token: 128 bits of its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def access_token(session_id: str, generation: int) -> str:
    return f"{session_id}.{generation}.{secrets.token_urlsafe(32)}"


@lru_cache(maxsize=4)
def _refresh_key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"session-refresh-tokens").derive(secret_key.encode())


def _refresh_secret(session_id: str, generation: int, salt: str) -> str:
    mac = hmac.digest(_refresh_key(configs.app.secret_key), f"{session_id}.{generation}.{salt}".encode(), "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def refresh_token(session_id: str, generation: int, salt: str) -> str:
    return f"{session_id}.{generation}.{_refresh_secret(session_id, generation, salt)}"


def issued(parts: TokenParts, salt: str) -> bool:
    """Whether the server issued this refresh token (of any generation) for the session with this salt."""
    return hmac.compare_digest(parts.secret, _refresh_secret(parts.session_id, parts.generation, salt))
