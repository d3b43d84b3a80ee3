"""Brute-force limits on password checks: failures counted per account and per client address in a window.

Redis keys: auth:fail:account:<account key> and auth:fail:ip:<address>, counters that expire
``auth.failure_window`` seconds after the first failure. A known account is counted under its user id
(``user_key``: its phone and email share one count), an unknown one under the name however it was written
(``account_key``). Each check is counted before it runs (``reserve_password_check``), so requests in
flight cannot pass the limit; a success clears the account's counters and gives the address back its attempt.
Logins and password changes count here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.config import configs
from app.errors import InvalidField, TooManyRequests
from app.extensions import redis_store
from app.i18n import _
from app.services.codes import digest
from app.services.phones import normalize_phone
from app.services.users import normalize_email


def user_key(user_id: int) -> str:
    """The one counter of a known account, whichever of its phone or email a check was written with."""
    return f"user:{user_id}"


def account_key(account: str) -> str:
    """``phone:<E.164>`` or ``email:<lower-cased>`` for every spelling of one phone number or address, and
    ``text:<HMAC>`` for anything else: a bounded name, so no client text of any length becomes a key."""
    text = account.strip().lower()
    try:
        if "@" in text:
            return f"email:{normalize_email(text)}"
        return f"phone:{normalize_phone(text)}"
    except InvalidField:
        return f"text:{digest('login-account', text)}"


def _keys(accounts: Sequence[str], ip: str) -> list[str]:
    """The accounts' counters, then the address's."""
    return [*(redis_store.key("auth", "fail", "account", a) for a in accounts),
            redis_store.key("auth", "fail", "ip", ip)]


# KEYS: the accounts' counters, then the address's. ARGV: the window (seconds), then each key's limit.
# Refuses with {index of the first used-up key, its ttl in ms}; otherwise counts the attempt on every key (the window
# starting at the first) and returns {0, 0}.
_RESERVE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then return {i, redis.call('PTTL', key)} end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return {0, 0}
"""
# KEYS: the accounts' counters, then the address's. The accounts' are cleared; the address's loses the attempt
# counted for a check that succeeded.
_RELEASE = """
for i = 1, #KEYS - 1 do redis.call('DEL', KEYS[i]) end
if tonumber(redis.call('GET', KEYS[#KEYS]) or '0') > 0 then redis.call('DECR', KEYS[#KEYS]) end
return 0
"""


def reserve_password_check(accounts: Sequence[str], ip: str) -> None:
    """Count a password check as failed before it runs, so no more than the limits can be in flight at once;
    429 with Retry-After while one of the account keys or the address has used up its failures. A check that
    succeeds gives its count back (``clear_login_failures``)."""
    auth = configs.auth
    limits = [auth.max_failures_per_account] * len(accounts) + [auth.max_failures_per_ip]
    refused, ttl = redis_store.run_script(_RESERVE, keys=_keys(accounts, ip), args=[auth.failure_window, *limits])
    if int(refused):
        raise TooManyRequests(_("Too many failed password checks; try again later."),
                              retry_after=math.ceil(max(int(ttl), 1000) / 1000))


def clear_login_failures(accounts: Sequence[str], ip: str) -> None:
    """After a successful check: the accounts' failures are forgotten, the address's reserved attempt returned."""
    redis_store.run_script(_RELEASE, keys=_keys(accounts, ip), args=[])
