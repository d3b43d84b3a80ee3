"""Sessions and their tokens, kept in Redis only, so every process and host sharing the Redis agrees at once.

Redis keys (under the configured prefix):
  auth:session:<id>         hash: user_id, created_at, last_seen_at, auth_at (the last proof of the password or
                            a second factor, when later than created_at), mfa_at (the last proof of a second
                            factor), ip, ua0, ua1, … (its User-Agent in pieces of at most 64 bytes), gen (the
                            generation of its token pair), access and refresh (digests of its tokens), expires
                            (when the access token stops being accepted, whole seconds)
                                                                TTL auth.refresh_ttl, renewed on refresh
  auth:index:<user id>      sorted set of the user's session ids, by login time   TTL auth.refresh_ttl, renewed
A token names its session (app.services.session_tokens), so there is no key per token: a session is a hash small
enough for Redis's compact encoding (every value at most 64 bytes) and an index entry (docs/performance.md).
Sessions opened before this layout (a key per token, a set per user: auth:access, auth:refresh, auth:user) are
served by app.services.legacy_sessions until they end.
This module names these keys and no other module touches them; its Lua scripts are in
app.services.session_scripts. The token check also fetches the user's cached row, whose key
app.services.user_cache names (its prefix comes in as an argument).
A refresh starts the next generation of the pair; a refresh token of an earlier generation coming back ends its
whole session (theft). A session ends ``auth.idle_timeout`` seconds after its last request or refresh and
``auth.session_max_age`` after its login: the token check and the refresh enforce both in the script they already
run (no extra round trip), and no token outlives its session's maximum age.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.config import configs
from app.extensions import redis_store
from app.services import legacy_sessions, session_tokens
from app.services.legacy_sessions import Prefixes
from app.services.session_scripts import AUTHENTICATE, DROP_ENDED, END, MARK_RECENT, OPEN, ROTATE
from app.services.session_tokens import new_session_id

__all__ = ["LiveToken", "Rotation", "TokenPair", "authenticate", "end_all_sessions", "end_session", "every_session",
           "list_sessions", "mark_recent", "new_session_id", "open_session", "prune_session_index", "rotate",
           "sessions_beyond"]


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


@dataclass(frozen=True)
class Rotation:
    """What a refresh did: a new pair, or the session it found retired (a theft, now ended), or neither."""

    pair: TokenPair | None = None
    reused_by: tuple[str, int] | None = None  # (session id, user id) when a retired token came back


def _now() -> str:
    return f"{time.time():.3f}"


def _key(*parts: str) -> str:
    return redis_store.key("auth", *parts)


def _prefixes() -> Prefixes:
    return Prefixes(session=_key("session", ""), access=_key("access", ""), refresh=_key("refresh", ""),
                    user=_key("user", ""), index=_key("index", ""))


def _end_prefixes() -> list[str]:
    """The prefixes every script that may end a session takes, in the order end_session takes them."""
    return [_key("access", ""), _key("refresh", ""), _key("user", ""), _key("index", "")]


def _user_agent_fields(user_agent: str) -> list[str]:
    """ua0, ua1, … and their values: the User-Agent (its first 256 characters) in pieces of at most 64 bytes of
    UTF-8, so that the session's hash keeps Redis's compact encoding."""
    pieces: list[str] = []
    for char in user_agent[:256]:
        if pieces and len((pieces[-1] + char).encode()) <= 64:
            pieces[-1] += char
        else:
            pieces.append(char)
    return [item for n, piece in enumerate(pieces) for item in (f"ua{n}", piece)]


def _user_agent_of(row: dict[str, str]) -> str:
    if "user_agent" in row:  # the layout before
        return row["user_agent"]
    pieces: list[str] = []
    for n in itertools.count():
        if f"ua{n}" not in row:
            return "".join(pieces)
        pieces.append(row[f"ua{n}"])
    return ""


def open_session(user_id: int, ip: str, user_agent: str, session_id: str | None = None,
                 second_factor: bool = False) -> TokenPair:
    """A new session, recently authenticated (with a second factor too, when ``second_factor``), with a fresh
    access and refresh token (``session_id`` when the caller needed to name it first, e.g. in a security event);
    with a replica, once one has it (``redis.replica_wait_ms``)."""
    auth = configs.auth
    session_id = session_id or new_session_id()
    token, refresh = session_tokens.access_token(session_id, 1), session_tokens.refresh_token(session_id, 1)
    access_ttl, refresh_ttl = min(auth.token_ttl, auth.session_max_age), min(auth.refresh_ttl, auth.session_max_age)
    now = time.time()
    stamp = f"{now:.3f}"
    fields = ["user_id", user_id, "created_at", stamp, "last_seen_at", stamp, "ip", ip[:64],  # auth_at: created_at
              "gen", 1, "access", session_tokens.digest(token), "refresh", session_tokens.digest(refresh),
              "expires", math.ceil(now + access_ttl), *_user_agent_fields(user_agent)]
    if second_factor:
        fields += ["mfa_at", stamp]  # auth_at is created_at until the session proves something again
    redis_store.run_script(OPEN, [_key("session", session_id), _key("index", str(user_id))],
                           [session_id, stamp, refresh_ttl, auth.refresh_ttl, *fields], replicated=True)
    return TokenPair(session_id, user_id, token, refresh, access_ttl, refresh_ttl)


def _limits() -> list[int]:
    return [configs.auth.idle_timeout, configs.auth.session_max_age]


def authenticate(token: str, snapshot_prefix: str) -> LiveToken | None:
    """What a live access token names, with the snapshot stored at ``snapshot_prefix`` + user id, recording
    last-seen; one Redis round trip (none for a token of no known form). None for any other token, and for one
    whose session outlived ``auth.idle_timeout`` or ``auth.session_max_age`` (that session ends)."""
    parts = session_tokens.parse_access(token)
    if parts is None:
        if session_tokens.is_legacy(token):
            found = legacy_sessions.authenticate(token, snapshot_prefix, _now(), _limits(), _prefixes())
            return LiveToken(*found) if found else None
        return None
    found = redis_store.run_script(
        AUTHENTICATE, keys=[_key("session", parts.session_id)],
        args=[_now(), parts.session_id, parts.generation, session_tokens.digest(token), snapshot_prefix,
              *_limits(), *_end_prefixes()])
    if not found:
        return None
    user_id, snapshot, authenticated_at, second_factor_at = found
    return LiveToken(parts.session_id, int(user_id), snapshot, float(authenticated_at), float(second_factor_at))


def rotate(refresh_token: str) -> Rotation:
    """Trade a refresh token for a new pair. One of an earlier generation ends its session; so does a session past
    its idle timeout or maximum age (no pair either way). One round trip (none for a token the server never issued)."""
    parts = session_tokens.parse_refresh(refresh_token)
    if parts is None:
        if session_tokens.is_legacy(refresh_token):
            return _rotated(legacy_sessions.rotate(refresh_token, _now(), _limits(), _prefixes()))
        return Rotation()
    auth, following = configs.auth, parts.generation + 1
    token = session_tokens.access_token(parts.session_id, following)
    refresh = session_tokens.refresh_token(parts.session_id, following)
    outcome = redis_store.run_script(
        ROTATE, keys=[_key("session", parts.session_id)],
        args=[_now(), parts.session_id, parts.generation, session_tokens.digest(refresh_token),
              session_tokens.digest(token), session_tokens.digest(refresh), auth.token_ttl, auth.refresh_ttl,
              *_limits(), *_end_prefixes()])
    if outcome[0] == 1:
        _, user_id, access_ttl, refresh_ttl = outcome
        return Rotation(TokenPair(parts.session_id, int(user_id), token, refresh, int(access_ttl), int(refresh_ttl)))
    if outcome[0] == 2:
        return _retired(parts.session_id)
    return Rotation()


def _retired(session_id: str) -> Rotation:
    """A refresh token this session has retired came back: end the session."""
    owner = end_session(session_id)
    return Rotation(reused_by=(session_id, owner) if owner else None)


def _rotated(outcome: legacy_sessions.Outcome) -> Rotation:
    if outcome.pair is not None:
        return Rotation(TokenPair(*outcome.pair))
    if outcome.retired is not None:
        return _retired(outcome.retired)
    return Rotation()


def end_session(session_id: str, user_id: int | None = None) -> int | None:
    """End one session (of ``user_id`` when given); its user's id if it existed, else None."""
    session = _key("session", session_id)
    owner = redis_store.hget(session, "user_id")
    if owner is None or (user_id is not None and owner != str(user_id)):
        return None
    ended = redis_store.run_script(END, keys=[session], args=[session_id, owner, *_end_prefixes()])
    return int(owner) if ended else None


def _indexed(user_id: int) -> list[str]:
    """The ids in the user's index and in the set of the layout before it, in one round trip."""
    with redis_store.pipeline(transaction=False) as pipe:
        pipe.zrange(_key("index", str(user_id)), 0, -1)
        pipe.smembers(_key("user", str(user_id)))
        ordered, legacy = pipe.execute()
    return sorted({*ordered, *legacy})


def end_all_sessions(user_id: int, keep: str | None = None) -> list[str]:
    """End every session of the user (but ``keep``); the ids of those that ended."""
    return [session_id for session_id in _indexed(user_id)
            if session_id != keep and end_session(session_id, user_id)]


def every_session() -> Iterator[tuple[str, int]]:
    """(session id, user id) of every open session, found with SCAN (no blocking KEYS)."""
    prefix = _key("session", "")
    for key in redis_store.scan_iter(match=prefix + "*", count=500):
        owner = redis_store.hget(key, "user_id")
        if owner is not None:
            yield key[len(prefix):], int(owner)


def prune_session_index(batch: int = 500) -> int:
    """Remove from the users' indexes the ids of sessions that expired (their hash is gone), walking with SCAN and
    ZSCAN (SSCAN for the sets of the layout before) ``batch`` at a time, each batch checked and removed
    atomically; how many went. A periodic job."""
    removed, session_prefix = 0, _key("session", "")
    for pattern, members in ((_key("index", "*"), _zset_members), (_key("user", "*"), redis_store.sscan_iter)):
        for index in redis_store.scan_iter(match=pattern, count=batch):
            ids: list[str] = []
            for session_id in members(index, count=batch):
                ids.append(session_id)
                if len(ids) == batch:
                    removed += redis_store.run_script(DROP_ENDED, keys=[index], args=[session_prefix, *ids])
                    ids = []
            if ids:
                removed += redis_store.run_script(DROP_ENDED, keys=[index], args=[session_prefix, *ids])
    return removed


def _zset_members(key: str, count: int) -> Iterator[str]:
    return (member for member, _score in redis_store.zscan_iter(key, count=count))


def sessions_beyond(user_id: int, limit: int) -> list[str]:
    """The ids of the user's oldest sessions past the newest ``limit`` (none, in one round trip, while under it)."""
    with redis_store.pipeline(transaction=False) as pipe:
        pipe.zcard(_key("index", str(user_id)))
        pipe.scard(_key("user", str(user_id)))
        if sum(pipe.execute()) <= limit:
            return []
    listed = list_sessions(user_id)
    return [s["id"] for s in listed[:max(0, len(listed) - limit)]]


def mark_recent(session_id: str, second_factor: bool = False) -> None:
    """The session has just proved the password or (``second_factor``) a second factor (see ``LiveToken``)."""
    redis_store.run_script(MARK_RECENT, keys=[_key("session", session_id)], args=[_now(), int(second_factor)])


def list_sessions(user_id: int) -> list[dict[str, Any]]:
    """The user's open sessions, oldest first (those past a lifetime limit end here, unlisted)."""
    ids = _indexed(user_id)
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
                         "ip": row.get("ip", ""), "user_agent": _user_agent_of(row)})
    if gone:
        with redis_store.pipeline(transaction=False) as pipe:
            pipe.zrem(_key("index", str(user_id)), *gone)
            pipe.srem(_key("user", str(user_id)), *gone)
            pipe.execute()
    return sorted(sessions, key=lambda s: s["created_at"])
