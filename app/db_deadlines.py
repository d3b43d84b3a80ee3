"""A deadline on every database call: a server that stops answering costs a request ``database.query_timeout``
seconds at most (a 503), and the connection it hung on is discarded, never reused.

- PostgreSQL (psycopg 3): connections are a psycopg ``Connection`` subclass whose every wait (a statement, a
  commit, a rollback) and whose connect carry the deadline. psycopg resumes these waits every 0.1 s, so no thread
  watches them; psycopg's own ``connect_timeout`` cannot go below 2 s. A wait past the deadline closes the
  connection and raises ``DeadlineExceeded``, which SQLAlchemy treats as a disconnect.
- MySQL/MariaDB (PyMySQL): ``read_timeout``/``write_timeout`` and ``connect_timeout`` on the socket; a read that
  times out closes the connection (error 2013, a disconnect to SQLAlchemy).
- Both: the server cancels a statement itself at ``SERVER_SHARE`` of the deadline (``statement_timeout``,
  ``max_statement_time``), so a slow query on a live server fails first there, keeping its connection.
- SQLite: nothing (no server).

Long work must not be cut off: migrations run on an engine without deadline (``engine_for_migrations``, used by
migrations/env.py, also for ``database.auto_migrate`` at server start), and manage.py defaults the key to 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from flask import Flask, current_app
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, ExceptionContext

from app.config import settings_of
from app.extensions import db

log = logging.getLogger(__name__)

SERVER_SHARE = 0.8  # the server cancels a statement at this share of the deadline, before the client gives up


def init_app(app: Flask) -> None:
    """Put ``database.query_timeout`` on the app's engine (nothing for SQLite or a timeout of 0)."""
    timeout = settings_of(app).database.query_timeout
    with app.app_context():
        engine = db.engine
    if timeout > 0 and engine.dialect.name != "sqlite":
        install(engine, timeout)


def install(engine: Engine, timeout: float) -> None:
    """Bound every connect and statement of ``engine`` by ``timeout`` seconds."""
    driver = (engine.dialect.name, engine.dialect.driver)
    if driver == ("postgresql", "psycopg"):
        connection_class = _psycopg_connection_class(timeout)
        server_ms = max(1, int(timeout * SERVER_SHARE * 1000))

        @event.listens_for(engine, "do_connect")
        def connect_postgresql(dialect: Any, record: Any, cargs: tuple, cparams: dict[str, Any]) -> Any:
            options = cparams.get("options", "")  # e.g. a search_path given in the URL
            cparams["options"] = f"{options} -c statement_timeout={server_ms}".strip()
            return connection_class.connect(*cargs, **cparams)

        @event.listens_for(engine, "handle_error")
        def discard_on_deadline(context: ExceptionContext) -> None:
            if isinstance(context.original_exception, connection_class.error):
                context.is_disconnect = True  # it stopped mid-answer: the pool must drop the connection

    elif driver in (("mysql", "pymysql"), ("mariadb", "pymysql")):
        # A read past read_timeout closes the connection (error 2013): SQLAlchemy counts it as a disconnect.
        @event.listens_for(engine, "do_connect")
        def connect_mysql(dialect: Any, record: Any, cargs: tuple, cparams: dict[str, Any]) -> None:
            cparams["read_timeout"] = cparams["write_timeout"] = timeout
            cparams["connect_timeout"] = min(float(cparams.get("connect_timeout") or timeout), timeout)

        @event.listens_for(engine, "connect")
        def limit_statements(dbapi_connection: Any, record: Any) -> None:
            mariadb = "mariadb" in dbapi_connection.get_server_info().lower()
            # MariaDB: seconds, every statement; MySQL: milliseconds, SELECT only.
            variable, value = (("max_statement_time", round(timeout * SERVER_SHARE, 3)) if mariadb
                               else ("max_execution_time", int(timeout * SERVER_SHARE * 1000)))
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET SESSION {variable} = {value}")

    else:
        log.warning("database.query_timeout is not enforced for the %s+%s driver", *driver)


@contextmanager
def engine_for_migrations() -> Iterator[Engine]:
    """The app's engine, or, when it carries a deadline, a temporary one just like it without: a long ALTER of a
    migration must not be cut off."""
    engine = db.engine
    if engine.dialect.name == "sqlite" or settings_of(current_app).database.query_timeout <= 0:
        yield engine
        return
    unbounded = create_engine(engine.url, **current_app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    try:
        yield unbounded
    finally:
        unbounded.dispose()


@cache
def _psycopg_connection_class(timeout: float) -> Any:
    """A psycopg Connection class whose connects and waits end after ``timeout`` seconds."""
    import psycopg  # only a PostgreSQL database needs psycopg installed
    from psycopg import errors  # (idem)

    class DeadlineExceeded(psycopg.OperationalError):
        """The database did not answer within ``database.query_timeout``; the connection is closed."""

    class DeadlineConnection(psycopg.Connection):
        deadline = timeout
        error: type[psycopg.OperationalError] = DeadlineExceeded

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            if timeout is not None:  # psycopg's own bounded waits (notifies) handle their timeout themselves
                return super().wait(gen, interval, timeout)
            try:
                return super().wait(gen, interval, self.deadline)
            except errors._WaitTimeout:
                self.pgconn.finish()  # mid-protocol: the connection can never be used again
                raise DeadlineExceeded(f"no answer from the database within {self.deadline} s") from None

        @classmethod
        def _connect_gen(cls, conninfo: str = "") -> Any:
            # psycopg resumes a connect's generator at least every 0.1 s: check the deadline each time.
            deadline = time.monotonic() + cls.deadline
            gen = super()._connect_gen(conninfo)
            try:
                waiting_for = next(gen)
                while True:
                    ready = yield waiting_for
                    if time.monotonic() >= deadline:
                        raise DeadlineExceeded(f"no connection to the database within {cls.deadline} s")
                    waiting_for = gen.send(ready)
            except StopIteration as done:
                return done.value
            finally:
                gen.close()  # a connect cut short: its half-open socket is closed now

    return DeadlineConnection
