"""Extension objects, created once and uninitialised; create_app() initialises them."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import redis
from flask import Flask, current_app
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from app.config import configs, settings_of
from app.config.sections import RedisSettings

# Named constraints, so migrations can drop and alter them on every backend (SQLite batch mode too).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RedisStore:
    """The app's Redis client: ``memory://`` gives an in-process fakeredis, other URLs a real server.

    Real servers get short timeouts and at most ``redis.retries`` immediate reconnects, so an outage
    becomes a 503 within about two seconds instead of a long retry loop.
    """

    def init_app(self, app: Flask) -> None:
        settings = settings_of(app).redis
        app.extensions["redis"] = self.connect(settings)
        app.extensions["redis_own_connections"] = threading.local()

    @staticmethod
    def connect(settings: RedisSettings) -> redis.Redis:
        url = settings.url
        if url.startswith("memory://"):
            import fakeredis  # only the embedded mode needs it: production processes do not load it


            return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=settings.connect_timeout,
            socket_timeout=settings.socket_timeout,
            retry=Retry(NoBackoff(), settings.retries, supported_errors=(redis.ConnectionError,)),
        )

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["redis"]

    def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the Lua ``source`` in one round trip, by its SHA-1 (sending the source only when Redis lacks it).

        Scripts run on a connection of the calling thread's own, not one checked out of the pool: the token check
        of every signed-in request is a script, and the pool's checkout, health probe and the client's command
        dispatch cost it about 40 us of CPU per call (README, Performance). A broken connection is reopened as
        the client would (``redis.retries``), so an outage is a 503 and recovery needs no restart.
        """
        connection = self._own_connection()
        sha = _sha1(source)

        def run() -> Any:
            try:
                connection.send_command("EVALSHA", sha, len(keys), *keys, *args)
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                connection.send_command("EVAL", source, len(keys), *keys, *args)
                return connection.read_response()

        return connection.retry.call_with_retry(run, lambda _error: connection.disconnect())

    def _own_connection(self) -> redis.connection.AbstractConnection:
        """This thread's connection to this app's Redis (a new one after a fork)."""
        own = current_app.extensions["redis_own_connections"]
        connection = getattr(own, "connection", None)
        if connection is None or own.pid != os.getpid():
            own.connection, own.pid = self.client.connection_pool.make_connection(), os.getpid()
            connection = own.connection
        return connection

    def key(self, *parts: str) -> str:
        """A key name under the configured prefix: ``key("sms", phone)`` → ``app:sms:+86…``."""
        return configs.redis.prefix + ":".join(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@functools.cache
def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # the name Redis gives a script


class TaskPool:
    """The bounded thread pool behind @async_task (``async.workers`` threads per app)."""

    def init_app(self, app: Flask) -> None:
        workers = settings_of(app).async_.workers
        app.extensions["tasks"] = _Pool(workers)

    @property
    def pool(self) -> _Pool:
        return current_app.extensions["tasks"]


class _Pool:
    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="task")
        self.pending: set[Future] = set()
        self.lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> Future:
        future = self.executor.submit(fn)
        with self.lock:
            self.pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self.lock:
            self.pending.discard(future)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for accepted work, then stop; whether all of it finished."""
        with self.lock:
            pending = set(self.pending)
        _, not_done = wait(pending, timeout=timeout)
        self.executor.shutdown(wait=not not_done, cancel_futures=True)
        return not not_done


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
mail = Mail()
redis_store = RedisStore()
tasks = TaskPool()
