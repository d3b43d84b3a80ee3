"""Sessions and their tokens, kept in Redis only, so every process and host sharing the Redis agrees at once.

Redis keys (under the configured prefix; tokens appear only as SHA-256 digests):
  auth:access:<digest>      "<session id>:<user id>"            TTL auth.token_ttl
  auth:refresh:<digest>     "<session id>", or "retired:<id>"   TTL auth.refresh_ttl
  auth:session:<id>         hash: user_id, created_at, last_seen_at, auth_at (the last proof of the password or
                            a second factor), mfa_at (the last proof of a second factor), ip, user_agent, access,
                            refresh (the digests of its live tokens)
                                                                TTL auth.refresh_ttl, renewed on refresh
  auth:user:<user id>       set of the user's session ids       TTL auth.refresh_ttl, renewed on login
This module names these keys and no other module touches them. The token check also fetches the user's cached
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

# Ends the session named by ``session`` (its hash key) and id ``id`` of user ``user_id``: its tokens, its hash, its
# place in the user's set. ARGV positions of the prefixes are the caller's: ACCESS_P, REFRESH_P, USER_P.
_END_SESSION_LUA = """
local function end_session(session, id, user_id, access_p, refresh_p, user_p)
  local tokens = redis.call('HMGET', session, 'access', 'refresh')
  if tokens[1] then redis.call('DEL', access_p .. tokens[1]) end
  if tokens[2] then redis.call('DEL', refresh_p .. tokens[2]) end
  if user_id then redis.call('SREM', user_p .. user_id, id) end
  return redis.call('DEL', session)
end
-- Whether a session whose hash holds these times has outlived idle (seconds since last seen) or max age.
local function outlived(times, now, idle, max_age)
  return now - tonumber(times[2]) > tonumber(idle) or now - tonumber(times[1]) > tonumber(max_age)
end
"""

# KEYS: access. ARGV: now, session prefix, user snapshot prefix, idle timeout, max age, access prefix, refresh
# prefix, user set prefix. One round trip: the token, its session (ended if it outlived a limit), last seen, and
# the user's cached row (app.services.user_cache). Returns {"<session id>:<user id>", snapshot, auth_at, mfa_at}.
AUTHENTICATE = _END_SESSION_LUA + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local id, user_id = string.match(value, '^([^:]+):(%d+)$')
local session = ARGV[2] .. id
local times = redis.call('HMGET', session, 'created_at', 'last_seen_at', 'auth_at', 'mfa_at')
if not times[1] then
  redis.call('DEL', KEYS[1])
  return false
end
if outlived(times, tonumber(ARGV[1]), ARGV[4], ARGV[5]) then
  end_session(session, id, user_id, ARGV[6], ARGV[7], ARGV[8])
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('HSET', session, 'last_seen_at', ARGV[1])
return {value, redis.call('GET', ARGV[3] .. user_id), times[3] or times[1], times[4] or '0'}
"""

# KEYS: old refresh, new access, new refresh. ARGV: now, session prefix, new access digest, new refresh digest,
# token ttl, refresh ttl, access prefix, user set prefix, idle timeout, max age, refresh prefix.
# Returns {1, session id, user id, access ttl, refresh ttl} (whole seconds; both capped by what the session's max
# age leaves, and the keys expire to the millisecond with it), {2, session id} for a retired token (theft), {3} when
# the session outlived a limit (now ended), or {0} when unknown.
_ROTATE = _END_SESSION_LUA + """
local value = redis.call('GET', KEYS[1])
if not value then return {0} end
local retired = string.match(value, '^retired:(.+)$')
if retired then return {2, retired} end
local session = ARGV[2] .. value
local user_id = redis.call('HGET', session, 'user_id')
if not user_id then return {0} end
local now = tonumber(ARGV[1])
local times = redis.call('HMGET', session, 'created_at', 'last_seen_at')
if outlived(times, now, ARGV[9], ARGV[10]) then
  end_session(session, value, user_id, ARGV[7], ARGV[11], ARGV[8])
  return {3}
end
local left_ms = math.floor((tonumber(ARGV[10]) - (now - tonumber(times[1]))) * 1000)
if left_ms < 1 then
  end_session(session, value, user_id, ARGV[7], ARGV[11], ARGV[8])
  return {3}
end
local access_ms = math.min(tonumber(ARGV[5]) * 1000, left_ms)
local refresh_ms = math.min(tonumber(ARGV[6]) * 1000, left_ms)
local old_access = redis.call('HGET', session, 'access')
if old_access then redis.call('DEL', ARGV[7] .. old_access) end
redis.call('SET', KEYS[1], 'retired:' .. value, 'KEEPTTL')
redis.call('SET', KEYS[2], value .. ':' .. user_id, 'PX', access_ms)
redis.call('SET', KEYS[3], value, 'PX', refresh_ms)
redis.call('HSET', session, 'access', ARGV[3], 'refresh', ARGV[4], 'last_seen_at', ARGV[1])
redis.call('PEXPIRE', session, refresh_ms)
redis.call('EXPIRE', ARGV[8] .. user_id, ARGV[6])
return {1, value, user_id, math.floor(access_ms / 1000), math.floor(refresh_ms / 1000)}
"""

# KEYS: session. ARGV: session id, user id, access prefix, refresh prefix, user set prefix. Ends one session.
_END = _END_SESSION_LUA + """
return end_session(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

# KEYS: session, access, refresh, user set. ARGV: session id, user id, now, ip, user agent, access and refresh digests,
# "1" with a second factor, access, refresh and user set ttls. A script, so the login can WAIT on its connection.
_OPEN = """
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'created_at', ARGV[3], 'last_seen_at', ARGV[3], 'auth_at', ARGV[3],
           'ip', ARGV[4], 'user_agent', ARGV[5], 'access', ARGV[6], 'refresh', ARGV[7])
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[10])
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[9])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[10])
redis.call('SADD', KEYS[4], ARGV[1])
return redis.call('EXPIRE', KEYS[4], ARGV[11])
"""

# KEYS: session. ARGV: now, "1" when a second factor was proved. Marks a live session recent; 1 if it was live.
_MARK_RECENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'auth_at', ARGV[1])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[1]) end
return 1
"""


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
    redis_store.run_script(_OPEN, keys, [session_id, user_id, now, ip, user_agent[:256], _digest(token),
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
        _ROTATE,
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
    ended = redis_store.run_script(_END, keys=[session], args=[session_id, owner, _key("access", ""),
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


def sessions_beyond(user_id: int, limit: int) -> list[str]:
    """The ids of the user's oldest sessions past the newest ``limit`` (none, in one round trip, while under it)."""
    if redis_store.scard(_key("user", str(user_id))) <= limit:
        return []
    listed = list_sessions(user_id)
    return [s["id"] for s in listed[:max(0, len(listed) - limit)]]


def mark_recent(session_id: str, second_factor: bool = False) -> None:
    """The session has just proved the password or (``second_factor``) a second factor (see ``LiveToken``)."""
    redis_store.run_script(_MARK_RECENT, keys=[_key("session", session_id)], args=[_now(), int(second_factor)])


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
