"""One-time codes in Redis: 6 digits from ``secrets``, kept as an HMAC under the app secret, with a TTL
and a number of tries. SMS codes and emailed reset codes both live here, and the limits on sending them.

Each code is a hash {hash, tries} at a key its caller owns; checking is one Lua script, so two parallel
checks of the right code cannot both pass.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from app.config import configs
from app.errors import InvalidField
from app.extensions import redis_store
from app.i18n import lazy_gettext

# KEYS: code, ticket. ARGV: code hash, max attempts, ticket value, ticket ttl (0 = store no ticket).
# Returns 0 no code, 1 right (code deleted, ticket stored), 2 wrong and now void, 3 wrong.
_CHECK = """
local stored = redis.call('HGET', KEYS[1], 'hash')
if not stored then return 0 end
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
  return 1
end
if redis.call('HINCRBY', KEYS[1], 'tries', 1) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 2
end
return 3
"""
# KEYS: cooldown, target counter, client counter. ARGV: cooldown, target cap, client cap, window (all seconds).
# Returns {0, 0} when the send may go ahead (cooldown set, counters counted), else {reason, wait in ms}:
# 1 inside the cooldown, 2 the target's cap reached, 3 the client's.
_RESERVE_SEND = """
local wait = redis.call('PTTL', KEYS[1])
if wait > 0 then return {1, wait} end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then
  return {2, redis.call('PTTL', KEYS[2])}
end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[3]) then
  return {3, redis.call('PTTL', KEYS[3])}
end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[1], '1', 'EX', ARGV[1]) end
for i = 2, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
return {0, 0}
"""
DAY = 24 * 3600
REFUSALS = {
    0: lazy_gettext("No valid code; request a new one."),
    2: lazy_gettext("Too many wrong codes; request a new one."),
    3: lazy_gettext("The code is wrong."),
}


def digest(*parts: str) -> str:
    """HMAC-SHA256 under the app secret: what Redis holds instead of a code or a ticket."""
    return hmac.new(configs.app.secret_key.encode(), "|".join(parts).encode(), hashlib.sha256).hexdigest()


def issue_code(key: str, ttl: int, *bound_to: str) -> str:
    """A new code at ``key`` (replacing any older one), bound to ``bound_to`` (e.g. purpose and phone)."""
    code = f"{secrets.randbelow(10**6):06d}"
    with redis_store.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"hash": digest("code", *bound_to, code), "tries": 0})
        pipe.expire(key, ttl)
        pipe.execute()
    return code


def use_code(key: str, code: str, field: str, *bound_to: str, ticket_key: str = "", ticket: str = "",
             ticket_ttl: int = 0) -> None:
    """Use the code up, storing ``ticket`` at ``ticket_key`` in the same step when given; 400 on ``field``
    when it is wrong, expired or void (``sms.max_attempts`` wrong tries void it)."""
    outcome = redis_store.run_script(_CHECK, keys=[key, ticket_key or key],
                                     args=[digest("code", *bound_to, str(code)), configs.sms.max_attempts, ticket,
                                           ticket_ttl])
    if outcome != 1:
        raise InvalidField(REFUSALS[outcome], field=field)


def reserve_send(wait_key: str, target_key: str, client_key: str, wait: int, target_cap: int,
                 client_cap: int) -> tuple[int, int]:
    """Count one message to a target (phone, address) asked by a client, in one step; (0, 0) when it may go,
    else (reason, wait in ms) as ``_RESERVE_SEND`` says. The caps count messages per 24 hours from the first."""
    reason, wait_ms = redis_store.run_script(_RESERVE_SEND, keys=[wait_key, target_key, client_key],
                                             args=[wait, target_cap, client_cap, DAY])
    return int(reason), int(wait_ms)
