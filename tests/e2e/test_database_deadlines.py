"""Every database call has a deadline (database.query_timeout, app/db_deadlines.py), on PostgreSQL and MariaDB.

These run on the shared servers whatever TEST_DATABASE_URL says (each test in a schema or database of its own):
a statement slower than the deadline on a live server, and a real server process behind a relay that freezes
(keeps the connections open, answers nothing: a hung server).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.extensions import db
from tests.fixtures.accounts import signed_in
from tests.fixtures.databases import fresh_database
from tests.support import PROJECT_DIR, timed, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.own_services]  # PostgreSQL and MariaDB, on every run

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
SLEEP = {"postgresql": "SELECT pg_sleep(3)", "mariadb": "SELECT SLEEP(3)"}
# What the server says when it cancels a statement at its own limit: PostgreSQL's statement_timeout, MariaDB's
# max_statement_time (error 1969).
CANCELLED = {"postgresql": "statement timeout", "mariadb": "max_statement_time exceeded"}


@pytest.fixture(params=sorted(SERVERS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """This test's own schema (PostgreSQL) or database (MariaDB) on the shared server of ``backend``."""
    with fresh_database(SERVERS[backend], tmp_path) as url:
        yield url


def relayed(url: str, relay) -> str:
    return make_url(url).set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)


def test_a_statement_past_the_deadline_on_a_live_server_is_cancelled_there_and_the_connection_kept(
        make_app, backend):
    app = make_app(create_tables=False)
    with app.app_context():
        connection = db.session.connection().connection.dbapi_connection
        started = time.monotonic()
        with pytest.raises(sa_exc.OperationalError) as raised:
            db.session.execute(text(SLEEP[backend]))
        took = time.monotonic() - started
        db.session.rollback()
        assert took < 2, took
        assert CANCELLED[backend] in str(raised.value.orig) and not raised.value.connection_invalidated
        assert db.session.scalar(text("SELECT 2")) == 2
        assert db.session.connection().connection.dbapi_connection is connection


def test_a_statement_on_a_hung_server_ends_at_the_deadline_and_its_connection_is_discarded(
        make_app, database_url, tcp_relay):
    target = make_url(database_url)
    relay = tcp_relay(target.host, target.port)
    app = make_app({"database": {"url": relayed(database_url, relay)}}, create_tables=False)
    with app.app_context():
        assert db.session.scalar(text("SELECT 1")) == 1
        connection = db.session.connection().connection.dbapi_connection
        relay.freeze()
        started = time.monotonic()
        with pytest.raises(sa_exc.OperationalError) as raised:
            db.session.execute(text("SELECT 2"))
        took = time.monotonic() - started
        db.session.rollback()
        assert 1.4 < took < 2, took  # the client's own deadline (the server never sees the statement)
        assert raised.value.connection_invalidated

        started = time.monotonic()  # a new connection through the frozen relay: the connect has the deadline too
        with pytest.raises(sa_exc.OperationalError):
            db.session.execute(text("SELECT 3"))
        assert time.monotonic() - started < 2
        db.session.rollback()

        relay.thaw()
        assert db.session.scalar(text("SELECT 4")) == 4
        assert db.session.connection().connection.dbapi_connection is not connection


def test_a_server_process_behind_a_frozen_database_answers_503_within_two_seconds_and_recovers(
        live_server, database_url, test_settings, tcp_relay):
    target = make_url(database_url)
    relay = tcp_relay(target.host, target.port)
    server = live_server(env={"DATABASE_URL": relayed(database_url, relay)})  # one process: one pool
    token = signed_in(server.url, test_settings)
    files, health = f"{server.url}/api/files/", f"{server.url}/api/health"
    assert requests.get(files, headers={"token": token}, timeout=5).status_code == 200

    relay.freeze()
    # The first waits on a pooled connection, which is then discarded; the next ones must connect anew.
    for _ in range(4):
        outage, took = timed(requests.get, files, headers={"token": token}, timeout=10)
        assert took < 2, took
        assert (outage.status_code, outage.json()["status"]) == (503, "SERVICE_UNAVAILABLE")
    report, took = timed(requests.get, health, timeout=10)
    assert took < 2, took
    assert report.status_code == 503 and report.json()["data"]["database"] == "down"

    relay.thaw()
    wait_until(lambda: requests.get(files, headers={"token": token}, timeout=5).status_code == 200, timeout=15)
    assert requests.get(health, timeout=5).json()["data"]["database"] == "ok"
    log = server.output() + Path(server.log_path.with_name("app.log")).read_text(errors="replace")
    assert "no answer from the database" in log or "Lost connection" in log  # the client's deadline ended it


def test_migrations_and_manage_py_commands_run_without_the_deadline(make_app, backend, server_env):
    """A migration's ALTER or a large prune may take longer than a request: not cut off."""
    from app.db_deadlines import engine_for_migrations

    sleep = SLEEP[backend].replace("3", "1")
    app = make_app({"database": {"query_timeout": 0.5}}, create_tables=False)
    with app.app_context():
        with pytest.raises(sa_exc.OperationalError):
            db.session.execute(text(sleep))
        db.session.rollback()
        with engine_for_migrations() as engine, engine.connect() as connection:
            connection.execute(text(sleep))  # migrations/env.py runs on this engine

    # manage.py (no APP_DATABASE__QUERY_TIMEOUT in its environment): longer than the default deadline's 1.2 s.
    statement = SLEEP[backend].replace("3", "1.4")
    script = f"from sqlalchemy import text; from app.extensions import db; db.session.execute(text({statement!r}))\n"
    script += "print('slept')\n"
    done = subprocess.run([sys.executable, "manage.py", "shell"], input=script, cwd=PROJECT_DIR, env=server_env,
                          capture_output=True, text=True, timeout=60)
    assert "slept" in done.stdout, done.stdout + done.stderr
