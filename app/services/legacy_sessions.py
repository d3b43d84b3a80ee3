"""Tokens issued before tokens named their session: served as they were, so an upgrade signs nobody out.

That layout kept a key per token (``auth:access:<sha256>`` → "<session id>:<user id>", ``auth:refresh:<sha256>`` →
"<session id>" or "retired:<session id>") and a set of session ids per user (``auth:user:<user id>``); its session
hash holds the two digests instead of ``gen``. Such a session keeps working, refreshes within its layout and ends
(app.services.sessions ends, lists and prunes both layouts). No session of this layout is opened any more, so the
last one ends at most ``auth.session_max_age`` after the upgrade; then delete this module,
app.services.legacy_session_scripts and tests/test_legacy_sessions.py. app.services.sessions names the keys and
passes their prefixes in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from app.config import configs
from app.extensions import redis_store
from app.services.legacy_session_scripts import AUTHENTICATE, ROTATE


@dataclass(frozen=True)
class Prefixes:
    session: str
    access: str
    refresh: str
    user: str
    index: str


@dataclass(frozen=True)
class Outcome:
    """A refresh's outcome: the new pair's fields (as app.services.sessions.TokenPair takes them), or the id of the
    session whose retired token came back, or neither."""

    pair: tuple[str, int, str, str, int, int] | None = None
    retired: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(token: str, snapshot_prefix: str, now: str, limits: list[int],
                 keys: Prefixes) -> tuple[str, int, str | None, float, float] | None:
    """(session id, user id, snapshot, auth_at, mfa_at) of a live access token of this layout, else None."""
    found = redis_store.run_script(
        AUTHENTICATE, keys=[keys.access + _digest(token)],
        args=[now, keys.session, snapshot_prefix, *limits, keys.access, keys.refresh, keys.user, keys.index])
    if not found:
        return None
    value, snapshot, authenticated_at, second_factor_at = found
    session_id, user_id = str(value).split(":", 1)
    return session_id, int(user_id), snapshot, float(authenticated_at), float(second_factor_at)


def rotate(refresh_token: str, now: str, limits: list[int], keys: Prefixes) -> Outcome:
    """Trade a refresh token of this layout for a new pair of this layout."""
    auth = configs.auth
    token, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    outcome = redis_store.run_script(
        ROTATE,
        keys=[keys.refresh + _digest(refresh_token), keys.access + _digest(token), keys.refresh + _digest(refresh)],
        args=[now, keys.session, _digest(token), _digest(refresh), auth.token_ttl, auth.refresh_ttl, keys.access,
              keys.user, *limits, keys.refresh, keys.index])
    if outcome[0] == 1:
        _, session_id, user_id, access_ttl, refresh_ttl = outcome
        return Outcome(pair=(str(session_id), int(user_id), token, refresh, int(access_ttl), int(refresh_ttl)))
    if outcome[0] == 2:
        return Outcome(retired=str(outcome[1]))
    return Outcome()
