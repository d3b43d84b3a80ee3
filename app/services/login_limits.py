"""Brute-force limits on password checks: failures counted per account and per client address in a window.

Redis keys: auth:fail:account:<account key> and auth:fail:ip:<address>, counters that expire
``auth.failure_window`` seconds after the first failure. An account key names the account however it was
written (``account_key``). A success clears the account's counters. Logins and password changes count here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.config import configs
from app.errors import InvalidField, TooManyRequests
from app.extensions import redis_store
from app.services.codes import digest
from app.services.phones import normalize_phone
from app.services.users import normalize_email


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


def check_login_allowed(accounts: Sequence[str], ip: str) -> None:
    """429 with Retry-After while one of the account keys or the address has used up its failures."""
    auth = configs.auth
    keys = _keys(accounts, ip)
    with redis_store.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key).pttl(key)
        found = pipe.execute()
    limits = [auth.max_failures_per_account] * len(accounts) + [auth.max_failures_per_ip]
    for count, ttl, limit in zip(found[::2], found[1::2], limits, strict=True):
        if int(count or 0) >= limit:
            raise TooManyRequests("Too many failed password checks; try again later.",
                                  retry_after=math.ceil(max(ttl, 1000) / 1000))


def record_login_failure(accounts: Sequence[str], ip: str) -> None:
    window = configs.auth.failure_window
    with redis_store.pipeline(transaction=True) as pipe:
        for key in _keys(accounts, ip):
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
        pipe.execute()


def clear_login_failures(accounts: Sequence[str]) -> None:
    redis_store.delete(*_keys(accounts, "-")[:-1])
