"""Extension objects, created once and uninitialised; create_app() initialises them."""

from __future__ import annotations

import functools
import hashlib
import logging
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
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from app import redis_urls
from app.config import configs, settings_of
from app.config.sections import RedisSettings

logger = logging.getLogger(__name__)

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
    """The app's Redis client (app/redis_urls.py): an in-process fakeredis for ``memory://``, else a real server
    or the master that the sentinels name, with short timeouts and at most ``redis.retries`` immediate reconnects,
    so an outage becomes a 503 within about two seconds instead of a long retry loop.
    """

    def init_app(self, app: Flask) -> None:
        settings = settings_of(app).redis
        app.extensions["redis"] = self.connect(settings)
        app.extensions["redis_own_connections"] = threading.local()
        # memory:// has no replicas to wait for (and fakeredis knows no ROLE or WAIT).
        app.extensions["redis_replica_wait_ms"] = 0 if settings.url.startswith("memory://") else \
            settings.replica_wait_ms

    @staticmethod
    def connect(settings: RedisSettings) -> redis.Redis:
        return redis_urls.connect(settings)

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["redis"]

    def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any], replicated: bool = False) -> Any:
        """Run the Lua ``source`` in one round trip, by its SHA-1 (sending the source only when Redis lacks it).

        Scripts run on a connection of the calling thread's own, not one checked out of the pool: the token check
        of every signed-in request is a script, and the pool's checkout, health probe and the client's command
        dispatch cost it about 40 us of CPU per call (README, Performance). A broken connection is reopened as
        the client would (``redis.retries``), asking the sentinels for the master again, so an outage or failover
        is a 503 and recovery needs no restart.

        ``replicated``: when the master has a replica, wait (``WAIT 1 redis.replica_wait_ms``, on this same
        connection) until one has the script's writes, so they survive a failover. Whether a replica is connected
        is asked with ROLE in the script's own round trip: with none, nothing waits.
        """
        sha = _sha1(source)
        wait_ms = current_app.extensions["redis_replica_wait_ms"] if replicated else 0

        def run() -> Any:
            connection = self._own_connection()
            if wait_ms:
                return self._run_and_wait(connection, source, sha, keys, args, wait_ms)
            try:
                connection.send_command("EVALSHA", sha, len(keys), *keys, *args)
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                connection.send_command("EVAL", source, len(keys), *keys, *args)
                return connection.read_response()

        return self._own_connection().retry.call_with_retry(run, lambda _error: self._drop_own_connection())

    def _run_and_wait(self, connection: redis.connection.AbstractConnection, source: str, sha: str,
                      keys: Sequence[str], args: Sequence[Any], wait_ms: int) -> Any:
        """The script and ROLE in one write; then, if the master has a replica, WAIT for one on this connection."""
        answers = _exchange(connection, [("EVALSHA", sha, len(keys), *keys, *args), ("ROLE",)])
        if isinstance(answers[0], redis.exceptions.NoScriptError):
            answers[0] = _exchange(connection, [("EVAL", source, len(keys), *keys, *args)])[0]
        if isinstance(answers[0], Exception):
            raise answers[0]
        role = answers[1]
        if not isinstance(role, Exception) and role[0] == "master" and role[2]:
            self._wait_for_a_replica(connection, wait_ms)
        return answers[0]

    @staticmethod
    def _wait_for_a_replica(connection: redis.connection.AbstractConnection, wait_ms: int) -> None:
        acknowledged = _exchange(connection, [("WAIT", 1, wait_ms)])[0]
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if not acknowledged:
            logger.warning("no Redis replica acknowledged a write within %d ms (redis.replica_wait_ms); "
                           "a failover now could lose it", wait_ms)

    def _own_connection(self) -> redis.connection.AbstractConnection:
        """This thread's connection to this app's Redis master (a new one after a fork), connected.

        ``connect()`` is called here, not left to the first command: only it asks the sentinels where the master is
        (a Sentinel pool's connection would otherwise dial its last address, or the default localhost:6379). The
        same connection is kept across failures: the pool counts every connection it makes (at most 100).
        """
        own = current_app.extensions["redis_own_connections"]
        connection = getattr(own, "connection", None)
        if connection is None or own.pid != os.getpid():
            own.connection, own.pid = self.client.connection_pool.make_connection(), os.getpid()
            connection = own.connection
        if not connection.is_connected:
            connection.connect()
        return connection

    def _drop_own_connection(self) -> None:
        own = current_app.extensions["redis_own_connections"]
        if getattr(own, "connection", None) is not None:
            own.connection.disconnect()

    def close(self) -> None:
        """Close this app's connections: this thread's own and the pool's (an app made and dropped in a running
        process, as tests do; a process that ends closes them anyway)."""
        self._drop_own_connection()
        self.client.connection_pool.disconnect()

    def key(self, *parts: str) -> str:
        """A key name under the configured prefix: ``key("sms", phone)`` → ``app:sms:+86…``."""
        return configs.redis.prefix + ":".join(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def _exchange(connection: redis.connection.AbstractConnection, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write and read every answer, an error answer as its exception (so the connection
    stays in step with what it was sent)."""
    connection.send_packed_command(connection.pack_commands(commands))
    answers: list[Any] = []
    for _ in commands:
        try:
            answers.append(connection.read_response())
        except redis.exceptions.ResponseError as exc:
            answers.append(exc)
    return answers


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
