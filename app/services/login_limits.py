"""Brute-force limits on logins: failures counted per account and per client address in a window.

Redis keys: auth:fail:account:<account> and auth:fail:ip:<address>, counters that expire
``auth.failure_window`` seconds after the first failure. A success clears the account's counter.
"""

from __future__ import annotations

import math

from app.config import configs
from app.errors import TooManyRequests
from app.extensions import redis_store


def _keys(account: str, ip: str) -> tuple[str, str]:
    return redis_store.key("auth", "fail", "account", account), redis_store.key("auth", "fail", "ip", ip)


def check_login_allowed(account: str, ip: str) -> None:
    """429 with Retry-After while the account or the address has used up its failures."""
    auth = configs.auth
    account_key, ip_key = _keys(account, ip)
    with redis_store.pipeline(transaction=False) as pipe:
        pipe.get(account_key).pttl(account_key).get(ip_key).pttl(ip_key)
        account_count, account_ttl, ip_count, ip_ttl = pipe.execute()
    for count, ttl, limit in ((account_count, account_ttl, auth.max_failures_per_account),
                              (ip_count, ip_ttl, auth.max_failures_per_ip)):
        if int(count or 0) >= limit:
            raise TooManyRequests("Too many failed logins; try again later.",
                                  retry_after=math.ceil(max(ttl, 1000) / 1000))


def record_login_failure(account: str, ip: str) -> None:
    window = configs.auth.failure_window
    with redis_store.pipeline(transaction=True) as pipe:
        for key in _keys(account, ip):
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
        pipe.execute()


def clear_login_failures(account: str) -> None:
    redis_store.delete(_keys(account, "-")[0])
