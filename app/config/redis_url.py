"""The Redis URL's forms, checked at start: ``memory://``, ``redis://`` / ``rediss://`` / ``unix://`` and
``redis+sentinel://[[user]:password@]host:port[,host:port…]/<service_name>[/db]`` (app/redis_urls.py connects)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from app.config.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel://"
_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL names. The password stays out of ``repr`` (it may reach a log)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    return url.lower().startswith(SENTINEL_SCHEME)


def parse_sentinel(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; ConfigError naming what is wrong (never the password)."""
    form = "redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db]"
    if not is_sentinel(url):
        raise ConfigError(f"the Redis URL is not a {SENTINEL_SCHEME} URL")
    rest = url[len(SENTINEL_SCHEME):]
    if "?" in rest or "#" in rest:
        raise ConfigError(f"the Redis Sentinel URL takes no query or fragment; the form is {form}")
    authority, slash, path = rest.partition("/")
    credentials, at, hosts = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        if not colon or not secret:
            raise ConfigError(f"the Redis Sentinel URL's credentials must be ':password@' or 'user:password@'; "
                              f"the form is {form}")
        username, password = unquote(user) or None, unquote(secret)
    # With credentials in the URL, a bad entry is named by its position: a password with an unescaped '/' or '@'
    # would otherwise show up in the message as a "host".
    sentinels = tuple(_host_port(part, form, None if "@" in url else part, number)
                      for number, part in enumerate(hosts.split(","), 1))
    parts = path.split("/") if slash else []
    if not parts or not _SERVICE.fullmatch(parts[0]):
        raise ConfigError(f"the Redis Sentinel URL must name the service after the hosts (letters, digits, . _ -); "
                          f"the form is {form}")
    if len(parts) > 2 or (len(parts) == 2 and not re.fullmatch(r"\d{1,5}", parts[1])):
        raise ConfigError(f"the Redis Sentinel URL's database after the service must be a number; the form is {form}")
    return SentinelURL(sentinels, parts[0], int(parts[1]) if len(parts) == 2 else 0, username, password)


def _host_port(part: str, form: str, shown: str | None, number: int) -> tuple[str, int]:
    host, colon, port = part.rpartition(":")
    if not part:
        raise ConfigError(f"the Redis Sentinel URL names no sentinel host (an empty entry in the list); "
                          f"the form is {form}")
    if not colon or not _HOST.fullmatch(host) or not re.fullmatch(r"\d{1,5}", port) or not 0 < int(port) < 65536:
        name = repr(_safe(shown)) if shown is not None else f"number {number}"
        raise ConfigError(f"the Redis Sentinel URL's sentinel {name} is not host:port; the form is {form}")
    return host.strip("[]"), int(port)


def _safe(text: str) -> str:
    return text[:80].encode("ascii", "backslashreplace").decode()


def url_problem(url: str) -> str | None:
    """Why the Redis URL cannot be used (a sentence without the password), or None."""
    lowered = url.lower()
    if lowered.startswith("memory://"):
        return None
    if is_sentinel(url):
        try:
            parse_sentinel(url)
        except ConfigError as exc:
            return str(exc)
        return None
    if not lowered.startswith(("redis://", "rediss://", "unix://")):
        return "the Redis URL must start with memory://, redis://, rediss://, unix:// or redis+sentinel://"
    return None
