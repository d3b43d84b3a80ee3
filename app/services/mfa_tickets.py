"""MFA tickets: what a user with a second factor gets instead of tokens after the first factor (a password or an
SMS code), traded with a TOTP or recovery code at POST /api/auth/login/mfa.

    auth:mfa_ticket:<HMAC of the ticket>   hash: user_id, purpose, tries, [password_hash]   TTL TICKET_TTL

A ticket is single use across every process sharing the Redis (the one request that deletes it wins) and allows
MAX_TRIES codes: each try is counted before its code is checked, so parallel guesses cannot pass the limit. A
password reset of such a user leaves the new password's hash in its ticket; it takes effect only with the code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from app.extensions import redis_store
from app.services.codes import digest

TICKET_TTL, MAX_TRIES = 300, 5

# KEYS: ticket. ARGV: max tries. Counts a try; {user_id, purpose, tries, password_hash} while the ticket is live
# and has tries left, else false (a ticket out of tries is deleted).
_TRY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return false
end
local row = redis.call('HMGET', KEYS[1], 'user_id', 'purpose', 'password_hash')
return {row[1], row[2], tries, row[3] or ''}
"""


@dataclass(frozen=True)
class Ticket:
    user_id: int
    purpose: str  # "login" or "reset_password"
    last_try: bool
    password_hash: str  # the new password's hash, for purpose reset_password


def _key(ticket: str) -> str:
    return redis_store.key("auth", "mfa_ticket", digest("mfa-ticket", ticket))


def issue(user_id: int, purpose: str, password_hash: str = "") -> str:
    ticket = secrets.token_urlsafe(32)
    fields = {"user_id": user_id, "purpose": purpose, "tries": 0}
    if password_hash:
        fields["password_hash"] = password_hash
    with redis_store.pipeline(transaction=True) as pipe:
        pipe.hset(_key(ticket), mapping=fields)
        pipe.expire(_key(ticket), TICKET_TTL)
        pipe.execute()
    return ticket


def try_ticket(ticket: str) -> Ticket | None:
    """Count one try of a code against the ticket; what it is for, or None when it is not live."""
    found = redis_store.run_script(_TRY, keys=[_key(ticket)], args=[MAX_TRIES]) if ticket else None
    if not found:
        return None
    user_id, purpose, tries, password_hash = found
    return Ticket(int(user_id), str(purpose), int(tries) >= MAX_TRIES, str(password_hash))


def use(ticket: str) -> bool:
    """Delete the ticket; whether this call was the one that did (single use)."""
    return bool(redis_store.delete(_key(ticket)))


def void(ticket: str) -> None:
    redis_store.delete(_key(ticket))
