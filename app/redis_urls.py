"""Redis URLs: ``memory://``, ``redis://`` / ``rediss://`` and ``redis+sentinel://`` (parsed and checked at start by
app/config/redis_url.py), connected one way, and the Celery broker settings for the same URL.

``redis+sentinel://[[user]:password@]host:port[,host:port…]/<service_name>[/db]`` names the sentinels to ask and
the service they watch; the client then follows whichever server the sentinels call master. The password (and the
ACL user) authenticate to the sentinels and to the master alike. Every client gets the short timeouts and small
retry of ``redis.*``, so an outage or a failover in progress is a 503 within about two seconds, never a wait.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from app.config.redis_url import is_sentinel, parse_sentinel
from app.config.sections import RedisSettings


def _retry(settings: RedisSettings) -> Retry:
    return Retry(NoBackoff(), settings.retries, supported_errors=(redis.ConnectionError,))


def connect(settings: RedisSettings) -> redis.Redis:
    """The client for ``settings.url``: fakeredis for ``memory://``, else a real server (or the sentinels' master)."""
    url = settings.url
    if url.startswith("memory://"):
        import fakeredis  # only the embedded mode needs it: production processes do not load it

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    timeouts = {"socket_connect_timeout": settings.connect_timeout, "socket_timeout": settings.socket_timeout}
    if not is_sentinel(url):
        return redis.Redis.from_url(url, decode_responses=True, retry=_retry(settings), **timeouts)
    parsed = parse_sentinel(url)
    auth = {"username": parsed.username, "password": parsed.password}
    # The sentinels are asked on every new connection (and again on its reconnect), one try each: together they
    # get one connect and one answer timeout, so dead or hung sentinels cannot stretch a 503 past two seconds.
    share = len(parsed.sentinels) * (settings.retries + 1)
    sentinel_kwargs = {"socket_connect_timeout": settings.connect_timeout / share,
                       "socket_timeout": settings.socket_timeout / share, **auth, "retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(parsed.service, db=parsed.db, decode_responses=True, retry=_retry(settings),
                               **timeouts, **auth)


def celery_broker(url: str) -> dict[str, Any]:
    """Celery's ``broker_url`` and ``broker_transport_options`` for the app's Redis URL (kombu's own forms: it spells
    redis-py's ``unix://PATH?db=N`` as ``redis+socket://PATH?virtual_host=N``, having no ``unix`` transport)."""
    if url.startswith("unix://"):
        url = "redis+socket://" + url.removeprefix("unix://").replace("db=", "virtual_host=")
    if not is_sentinel(url):
        return {"broker_url": url, "broker_transport_options": {}}
    parsed = parse_sentinel(url)
    credentials = ""
    if parsed.password is not None:
        credentials = f"{quote(parsed.username or '', safe='')}:{quote(parsed.password, safe='')}@"
    hosts = [f"[{host}]" if ":" in host else host for host, _ in parsed.sentinels]
    broker = ";".join(f"sentinel://{credentials}{host}:{port}/{parsed.db}"
                      for host, (_, port) in zip(hosts, parsed.sentinels, strict=True))
    options: dict[str, Any] = {"master_name": parsed.service}
    if parsed.password is not None:  # kombu authenticates to the sentinels only through sentinel_kwargs
        options["sentinel_kwargs"] = {"password": parsed.password,
                                      **({"username": parsed.username} if parsed.username else {})}
    return {"broker_url": broker, "broker_transport_options": options}
