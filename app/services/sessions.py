"""Sessions and their tokens, kept in Redis only, so every process and host sharing the Redis agrees at once.

Redis keys (under the configured prefix; tokens appear only as SHA-256 digests):
  auth:access:<digest>      "<session id>:<user id>"            TTL auth.token_ttl
  auth:refresh:<digest>     "<session id>", or "retired:<id>"   TTL auth.refresh_ttl
  auth:session:<id>         hash: user_id, created_at, last_seen_at, auth_at (the last proof of the password or
                            a second factor), mfa_at (the last proof of a second factor), ip, user_agent, access,
                            refresh (the digests of its live tokens)
                                                                TTL auth.refresh_ttl, renewed on refresh
  auth:user:<user id>       set of the user's session ids       TTL auth.refresh_ttl, renewed on login
This module names these keys and no other module touches them; its Lua scripts are in
app.services.session_scripts. The token check also fetches the user's cached
row, whose key app.services.user_cache names (its prefix comes in as an argument).
A refresh retires the old refresh token; presenting a retired one ends its whole session (theft).
A session ends ``auth.idle_timeout`` seconds after its last request or refresh and ``auth.session_max_age`` after
its login: the token check and the refresh enforce both in the script they already run (no extra round trip), and
no token outlives its session's maximum age.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.config import configs
from app.extensions import redis_store
from app.services.session_scripts import AUTHENTICATE, DROP_ENDED, END, MARK_RECENT, OPEN, ROTATE


@dataclass(frozen=True)
class LiveToken:
    """What a live access token names: its session and user, the user's cached snapshot (None if not cached), and
    when the session last proved the password or a second factor (epoch seconds)."""

    session_id: str
    user_id: int
    snapshot: str | None
    authenticated_at: float
    second_factor_at: float  # when the session last proved a second factor (0: never)


@dataclass(frozen=True)
class TokenPair:
    session_id: str
    user_id: int
    token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return f"{time.time():.3f}"


def _key(*parts: str) -> str:
    return redis_store.key("auth", *parts)


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


def open_session(user_id: int, ip: str, user_agent: str, session_id: str | None = None,
                 second_factor: bool = False) -> TokenPair:
    """A new session, recently authenticated (with a second factor too, when ``second_factor``), with a fresh
    access and refresh token (``session_id`` when the caller needed to name it first, e.g. in a security event);
    with a replica, once one has it (``redis.replica_wait_ms``)."""
    auth = configs.auth
    session_id = session_id or new_session_id()
    token, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    access_ttl, refresh_ttl = min(auth.token_ttl, auth.session_max_age), min(auth.refresh_ttl, auth.session_max_age)
    now = _now()
    keys = [_key("session", session_id), _key("access", _digest(token)), _key("refresh", _digest(refresh)),
            _key("user", str(user_id))]
    redis_store.run_script(OPEN, keys, [session_id, user_id, now, ip, user_agent[:256], _digest(token),
                                        _digest(refresh), int(second_factor), access_ttl, refresh_ttl,
                                        auth.refresh_ttl], replicated=True)
    return TokenPair(session_id, user_id, token, refresh, access_ttl, refresh_ttl)


def _limits() -> list[int]:
    return [configs.auth.idle_timeout, configs.auth.session_max_age]


def authenticate(token: str, snapshot_prefix: str) -> LiveToken | None:
    """What a live access token names, with the snapshot stored at ``snapshot_prefix`` + user id, recording
    last-seen; one Redis round trip. None for any other token, and for one whose session outlived
    ``auth.idle_timeout`` or ``auth.session_max_age`` (that session ends)."""
    if not token:
        return None
    found = redis_store.run_script(
        AUTHENTICATE, keys=[_key("access", _digest(token))],
        args=[_now(), _key("session", ""), snapshot_prefix, *_limits(), _key("access", ""), _key("refresh", ""),
              _key("user", "")])
    if not found:
        return None
    value, snapshot, authenticated_at, second_factor_at = found
    session_id, user_id = str(value).split(":", 1)
    return LiveToken(session_id, int(user_id), snapshot, float(authenticated_at), float(second_factor_at))


@dataclass(frozen=True)
class Rotation:
    """What a refresh did: a new pair, or the session it found retired (a theft, now ended), or neither."""

    pair: TokenPair | None = None
    reused_by: tuple[str, int] | None = None  # (session id, user id) when a retired token came back


def rotate(refresh_token: str) -> Rotation:
    """Trade a refresh token for a new pair. A retired one ends its session; so does a session past its idle
    timeout or maximum age (no pair either way)."""
    auth = configs.auth
    token, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    outcome = redis_store.run_script(
        ROTATE,
        keys=[_key("refresh", _digest(refresh_token)), _key("access", _digest(token)),
              _key("refresh", _digest(refresh))],
        args=[_now(), _key("session", ""), _digest(token), _digest(refresh), auth.token_ttl, auth.refresh_ttl,
              _key("access", ""), _key("user", ""), *_limits(), _key("refresh", "")],
    )
    if outcome[0] == 1:
        _, session_id, user_id, access_ttl, refresh_ttl = outcome
        return Rotation(TokenPair(str(session_id), int(user_id), token, refresh, int(access_ttl), int(refresh_ttl)))
    if outcome[0] == 2:
        session_id = str(outcome[1])
        owner = end_session(session_id)
        return Rotation(reused_by=(session_id, owner) if owner else None)
    return Rotation()


def end_session(session_id: str, user_id: int | None = None) -> int | None:
    """End one session (of ``user_id`` when given); its user's id if it existed, else None."""
    session = _key("session", session_id)
    owner = redis_store.hget(session, "user_id")
    if owner is None or (user_id is not None and owner != str(user_id)):
        return None
    ended = redis_store.run_script(END, keys=[session], args=[session_id, owner, _key("access", ""),
                                                               _key("refresh", ""), _key("user", "")])
    return int(owner) if ended else None


def end_all_sessions(user_id: int, keep: str | None = None) -> list[str]:
    """End every session of the user (but ``keep``); the ids of those that ended."""
    return [session_id for session_id in sorted(redis_store.smembers(_key("user", str(user_id))))
            if session_id != keep and end_session(session_id, user_id)]


def every_session() -> Iterator[tuple[str, int]]:
    """(session id, user id) of every open session, found with SCAN (no blocking KEYS)."""
    prefix = _key("session", "")
    for key in redis_store.scan_iter(match=prefix + "*", count=500):
        owner = redis_store.hget(key, "user_id")
        if owner is not None:
            yield key[len(prefix):], int(owner)


def prune_session_index(batch: int = 500) -> int:
    """Remove from the users' sets the ids of sessions that expired (their hash is gone), walking with SCAN and
    SSCAN ``batch`` at a time, each batch checked and removed atomically; how many went. A periodic job."""
    removed, session_prefix = 0, _key("session", "")
    for user_set in redis_store.scan_iter(match=_key("user", "*"), count=batch):
        ids: list[str] = []
        for session_id in redis_store.sscan_iter(user_set, count=batch):
            ids.append(session_id)
            if len(ids) == batch:
                removed += redis_store.run_script(DROP_ENDED, keys=[user_set], args=[session_prefix, *ids])
                ids = []
        if ids:
            removed += redis_store.run_script(DROP_ENDED, keys=[user_set], args=[session_prefix, *ids])
    return removed


def sessions_beyond(user_id: int, limit: int) -> list[str]:
    """The ids of the user's oldest sessions past the newest ``limit`` (none, in one round trip, while under it)."""
    if redis_store.scard(_key("user", str(user_id))) <= limit:
        return []
    listed = list_sessions(user_id)
    return [s["id"] for s in listed[:max(0, len(listed) - limit)]]


def mark_recent(session_id: str, second_factor: bool = False) -> None:
    """The session has just proved the password or (``second_factor``) a second factor (see ``LiveToken``)."""
    redis_store.run_script(MARK_RECENT, keys=[_key("session", session_id)], args=[_now(), int(second_factor)])


def list_sessions(user_id: int) -> list[dict[str, Any]]:
    """The user's open sessions, oldest first (those past a lifetime limit end here, unlisted)."""
    ids = sorted(redis_store.smembers(_key("user", str(user_id))))
    with redis_store.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hgetall(_key("session", session_id))
        rows = pipe.execute()
    now, (idle, max_age) = time.time(), _limits()
    sessions, gone = [], []
    for session_id, row in zip(ids, rows, strict=True):
        if not row:
            gone.append(session_id)
            continue
        created_at, last_seen_at = float(row["created_at"]), float(row["last_seen_at"])
        if now - last_seen_at > idle or now - created_at > max_age:
            end_session(session_id, user_id)
            continue
        sessions.append({"id": session_id, "created_at": created_at, "last_seen_at": last_seen_at,
                         "ip": row.get("ip", ""), "user_agent": row.get("user_agent", "")})
    if gone:
        redis_store.srem(_key("user", str(user_id)), *gone)
    return sorted(sessions, key=lambda s: s["created_at"])
