"""Sessions and their tokens, kept in Redis only, so every process and host sharing the Redis agrees at once.

Redis keys (under the configured prefix; tokens appear only as SHA-256 digests):
  auth:access:<digest>      "<session id>:<user id>"            TTL auth.token_ttl
  auth:refresh:<digest>     "<session id>", or "retired:<id>"   TTL auth.refresh_ttl
  auth:session:<id>         hash: user_id, created_at, last_seen_at, ip, user_agent, access, refresh
                            (the digests of its live tokens)    TTL auth.refresh_ttl, renewed on refresh
  auth:user:<user id>       set of the user's session ids       TTL auth.refresh_ttl, renewed on login
This module names these keys and no other module touches them. The token check also fetches the user's cached
row, whose key app.services.user_cache names (its prefix comes in as an argument).
A refresh retires the old refresh token; presenting a retired one ends its whole session (theft).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from app.config import configs
from app.extensions import redis_store

# KEYS: access. ARGV: now, session key prefix, user snapshot key prefix. One round trip: the token, its session,
# last seen, and the user's cached row (app.services.user_cache). Returns {"<session id>:<user id>", snapshot}.
AUTHENTICATE = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local session = ARGV[2] .. string.match(value, '^([^:]+)')
-- HSET adding a new field means the session hash was gone: undo that and refuse the token.
if redis.call('HSET', session, 'last_seen_at', ARGV[1]) == 1 then
  redis.call('DEL', session, KEYS[1])
  return false
end
return {value, redis.call('GET', ARGV[3] .. string.match(value, ':(%d+)$'))}
"""

# KEYS: old refresh, new access, new refresh. ARGV: now, session key prefix, new access digest,
# new refresh digest, token ttl, refresh ttl, access key prefix, user key prefix.
# Returns {1, session id, user id}, {2, session id} for a retired token (theft), or {0} when unknown.
_ROTATE = """
local value = redis.call('GET', KEYS[1])
if not value then return {0} end
local retired = string.match(value, '^retired:(.+)$')
if retired then return {2, retired} end
local session = ARGV[2] .. value
local user_id = redis.call('HGET', session, 'user_id')
if not user_id then return {0} end
local old_access = redis.call('HGET', session, 'access')
if old_access then redis.call('DEL', ARGV[7] .. old_access) end
redis.call('SET', KEYS[1], 'retired:' .. value, 'KEEPTTL')
redis.call('SET', KEYS[2], value .. ':' .. user_id, 'EX', ARGV[5])
redis.call('SET', KEYS[3], value, 'EX', ARGV[6])
redis.call('HSET', session, 'access', ARGV[3], 'refresh', ARGV[4], 'last_seen_at', ARGV[1])
redis.call('EXPIRE', session, ARGV[6])
redis.call('EXPIRE', ARGV[8] .. user_id, ARGV[6])
return {1, value, user_id}
"""

# KEYS: session, user set. ARGV: access key prefix, refresh key prefix, session id. Ends one session.
_END = """
local tokens = redis.call('HMGET', KEYS[1], 'access', 'refresh')
if tokens[1] then redis.call('DEL', ARGV[1] .. tokens[1]) end
if tokens[2] then redis.call('DEL', ARGV[2] .. tokens[2]) end
redis.call('SREM', KEYS[2], ARGV[3])
return redis.call('DEL', KEYS[1])
"""


@dataclass(frozen=True)
class LiveToken:
    """What a live access token names: its session and user, and the user's cached snapshot (None if not cached)."""

    session_id: str
    user_id: int
    snapshot: str | None


@dataclass(frozen=True)
class TokenPair:
    session_id: str
    user_id: int
    token: str
    refresh_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return f"{time.time():.3f}"


def _key(*parts: str) -> str:
    return redis_store.key("auth", *parts)


def open_session(user_id: int, ip: str, user_agent: str) -> TokenPair:
    """A new session with a fresh access and refresh token."""
    auth = configs.auth
    session_id = secrets.token_urlsafe(12)
    token, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = _now()
    session = _key("session", session_id)
    with redis_store.pipeline(transaction=True) as pipe:
        pipe.hset(session, mapping={
            "user_id": user_id, "created_at": now, "last_seen_at": now, "ip": ip,
            "user_agent": user_agent[:256], "access": _digest(token), "refresh": _digest(refresh),
        })
        pipe.expire(session, auth.refresh_ttl)
        pipe.set(_key("access", _digest(token)), f"{session_id}:{user_id}", ex=auth.token_ttl)
        pipe.set(_key("refresh", _digest(refresh)), session_id, ex=auth.refresh_ttl)
        pipe.sadd(_key("user", str(user_id)), session_id)
        pipe.expire(_key("user", str(user_id)), auth.refresh_ttl)
        pipe.execute()
    return TokenPair(session_id, user_id, token, refresh)


def authenticate(token: str, snapshot_prefix: str) -> LiveToken | None:
    """What a live access token names, with the snapshot stored at ``snapshot_prefix`` + user id, recording
    last-seen; one Redis round trip. None for any other token."""
    if not token:
        return None
    found = redis_store.run_script(AUTHENTICATE, keys=[_key("access", _digest(token))],
                                   args=[_now(), _key("session", ""), snapshot_prefix])
    if not found:
        return None
    value, snapshot = found
    session_id, user_id = str(value).split(":", 1)
    return LiveToken(session_id, int(user_id), snapshot)


def rotate(refresh_token: str) -> TokenPair | None:
    """Trade a refresh token for a new pair; a retired one ends its session. None when refused."""
    auth = configs.auth
    token, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    outcome = redis_store.run_script(
        _ROTATE,
        keys=[_key("refresh", _digest(refresh_token)), _key("access", _digest(token)),
              _key("refresh", _digest(refresh))],
        args=[_now(), _key("session", ""), _digest(token), _digest(refresh), auth.token_ttl, auth.refresh_ttl,
              _key("access", ""), _key("user", "")],
    )
    if outcome[0] == 1:
        return TokenPair(str(outcome[1]), int(outcome[2]), token, refresh)
    if outcome[0] == 2:
        end_session(str(outcome[1]))
    return None


def end_session(session_id: str, user_id: int | None = None) -> bool:
    """End one session (of ``user_id`` when given); whether it existed."""
    session = _key("session", session_id)
    if user_id is None:
        owner = redis_store.hget(session, "user_id")
        if owner is None:
            return False
        user_id = int(owner)
    elif redis_store.hget(session, "user_id") != str(user_id):
        return False
    return bool(redis_store.run_script(_END, keys=[session, _key("user", str(user_id))],
                                       args=[_key("access", ""), _key("refresh", ""), session_id]))


def end_all_sessions(user_id: int, keep: str | None = None) -> int:
    """End every session of the user (but ``keep``); how many ended."""
    ended = 0
    for session_id in redis_store.smembers(_key("user", str(user_id))):
        if session_id != keep and end_session(session_id, user_id):
            ended += 1
    return ended


def list_sessions(user_id: int) -> list[dict[str, Any]]:
    """The user's open sessions, oldest first."""
    ids = sorted(redis_store.smembers(_key("user", str(user_id))))
    with redis_store.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hgetall(_key("session", session_id))
        rows = pipe.execute()
    sessions, gone = [], []
    for session_id, row in zip(ids, rows, strict=True):
        if not row:
            gone.append(session_id)
            continue
        sessions.append({
            "id": session_id,
            "created_at": float(row["created_at"]),
            "last_seen_at": float(row["last_seen_at"]),
            "ip": row.get("ip", ""),
            "user_agent": row.get("user_agent", ""),
        })
    if gone:
        redis_store.srem(_key("user", str(user_id)), *gone)
    return sorted(sessions, key=lambda s: s["created_at"])
