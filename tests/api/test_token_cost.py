"""Checking a token costs one Redis round trip, no SQL query and no ORM work while the user's row is cached (with
Sentinel too), and a change to the user shows at once; a login waits for a replica only when there is one."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import request_finished
from flask_restx import Namespace, Resource
from redis.connection import AbstractConnection
from sqlalchemy import event

from app import auth
from app.decorators import login_check
from app.extensions import db
from app.services import session_scripts, sessions
from app.services.session_tokens import digest
from tests.fixtures.accounts import PASSWORD, bearer, login
from tests.support import deep_merge


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT"}


def _commands(packed: bytes) -> list[str]:
    """The command names in what a connection sends (RESP arrays of bulk strings)."""
    names, lines = [], packed.split(b"\r\n")
    index = 0
    while index < len(lines) and lines[index].startswith(b"*"):
        count = int(lines[index][1:])
        names.append(lines[index + 2].decode().upper())
        index += 1 + 2 * count
    return names


@contextmanager
def counting(app) -> Iterator[tuple[list[str], list[str]]]:
    """(Redis round trips, SQL statements) made inside the block: every write to a Redis connection is one
    round trip (a pipeline's commands go in one write), named by its command or "PIPELINE". A new connection's
    handshake (once per connection, not per request) is left out."""
    round_trips: list[str] = []
    statements: list[str] = []
    original = AbstractConnection.send_packed_command

    def counting_send(self, command, *args, **kwargs):
        packed = command if isinstance(command, bytes) else b"".join(command)
        names = _commands(packed)
        if names[0] not in HANDSHAKE:
            round_trips.append(names[0] if len(names) == 1 else "PIPELINE")
        return original(self, command, *args, **kwargs)

    def statement(*args):
        statements.append(args[2])

    with app.app_context():
        engine = db.engine
    app.extensions["redis"].script_load(sessions.AUTHENTICATE)  # as after any earlier token check
    AbstractConnection.send_packed_command = counting_send  # type: ignore[method-assign]
    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield round_trips, statements
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", statement)


def test_a_signed_in_read_costs_one_redis_round_trip_and_no_query_once_cached(app, client, make_user):
    make_user("+8613800138000")
    token = login(client, "+8613800138000")["token"]

    with counting(app) as (round_trips, statements):  # the first read after login: not cached yet
        first = client.get("/api/users/me", headers=bearer(token))
    assert first.status_code == 200
    assert round_trips == ["EVALSHA", "SET"] and len(statements) == 1, (round_trips, statements)

    with counting(app) as (round_trips, statements):
        second = client.get("/api/users/me", headers=bearer(token))
    assert second.status_code == 200 and second.get_json() == first.get_json()
    assert round_trips == ["EVALSHA"] and statements == [], (round_trips, statements)


def test_a_change_to_the_user_drops_the_snapshot_at_once(app, client, make_user):
    user_id = make_user("+8613800138000")
    token = login(client, "+8613800138000")["token"]
    assert client.get("/api/users/me", headers=bearer(token)).get_json()["data"]["nickname"] == "user 8000"
    changed = client.patch("/api/users/me", headers=bearer(token), json={"nickname": "renamed"})
    assert changed.status_code == 200 and changed.get_json()["data"]["nickname"] == "renamed"
    assert client.get("/api/users/me", headers=bearer(token)).get_json()["data"]["nickname"] == "renamed"

    with app.app_context():  # a change from anywhere else in the code: an admin deactivates the account
        from app.models import User

        db.session.get(User, user_id).is_active = False
        db.session.commit()
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 403


def test_with_the_cache_off_every_read_queries_the_row(make_app, accounts_settings, make_user):
    app = make_app({**accounts_settings, "auth": {"profile_cache_ttl": 0}})
    client = app.test_client()
    from app.services.users import create_user

    with app.app_context():
        create_user("+8613800138001", PASSWORD, "n", None)
    token = login(client, "+8613800138001")["token"]
    for _ in range(2):
        with counting(app) as (round_trips, statements):
            assert client.get("/api/users/me", headers=bearer(token)).status_code == 200
        assert round_trips == ["EVALSHA"] and len(statements) == 1


@contextmanager
def sessions_opened(app) -> Iterator[list[bool]]:
    """Whether each request inside the block opened a database session (seen as it finishes, before teardown)."""
    opened: list[bool] = []

    def finished(_sender, **_extra):
        opened.append(db.session.registry.has())

    request_finished.connect(finished, app)
    try:
        yield opened
    finally:
        request_finished.disconnect(finished, app)


def test_a_cached_read_of_who_is_signed_in_does_no_orm_work(app, client, make_user):
    make_user("+8613800138000")
    token = login(client, "+8613800138000")["token"]
    client.get("/api/users/me", headers=bearer(token))  # caches the snapshot

    with sessions_opened(app) as opened:
        assert client.get("/api/users/me", headers=bearer(token)).status_code == 200
        assert client.get("/api/auth/sessions", headers=bearer(token)).status_code == 200
        assert client.patch("/api/users/me", headers=bearer(token), json={"nickname": "n"}).status_code == 200
    assert opened == [False, False, True]  # only the change needed the row


probe = Namespace("probe")


@probe.route("/user")
class Probe(Resource):
    @login_check
    def get(self):
        user = auth.current_user()  # made here, from the snapshot, without a query
        return {"same": user is auth.current_user(), "attached": user in db.session,
                "hash_loaded_on_demand": user.password_hash.startswith("$argon2"), "nickname": user.nickname}


def test_current_user_is_the_attached_row_on_first_use(make_app, accounts_settings, make_user):
    app = make_app(accounts_settings, extra_namespaces=[(probe, "/probe")])
    client = app.test_client()
    from app.services.users import create_user

    with app.app_context():
        create_user("+8613800138002", PASSWORD, "probe", None)
    token = login(client, "+8613800138002")["token"]
    client.get("/api/users/me", headers=bearer(token))  # caches the snapshot

    with counting(app) as (round_trips, statements):
        answer = client.get("/api/probe/user", headers=bearer(token))
    assert answer.get_json() == {"same": True, "attached": True, "hash_loaded_on_demand": True, "nickname": "probe"}
    assert round_trips == ["EVALSHA"] and len(statements) == 1, (round_trips, statements)  # the hash only


def test_current_user_is_the_row_the_token_check_read_when_the_snapshot_was_gone(make_app, accounts_settings):
    app = make_app(accounts_settings, extra_namespaces=[(probe, "/probe")])
    client = app.test_client()
    from app.services.users import create_user

    with app.app_context():
        create_user("+8613800138003", PASSWORD, "probe", None)
    token = login(client, "+8613800138003")["token"]  # nothing cached yet

    with counting(app) as (round_trips, statements):
        answer = client.get("/api/probe/user", headers=bearer(token))
    assert answer.get_json() == {"same": True, "attached": True, "hash_loaded_on_demand": True, "nickname": "probe"}
    assert round_trips == ["EVALSHA", "SET"] and len(statements) == 1, (round_trips, statements)  # the row only


def _user_and_client(app: Any, phone: str) -> Any:
    from app.services.users import create_user

    with app.app_context():
        create_user(phone, PASSWORD, "n", None)
    return app.test_client()


def test_with_sentinel_a_signed_in_read_still_costs_one_round_trip(make_app, accounts_settings, sentinel_group):
    app = make_app(deep_merge(accounts_settings, {"redis": {"url": sentinel_group.url}}))
    client = _user_and_client(app, "+8613800138004")
    token = login(client, "+8613800138004")["token"]
    client.get("/api/users/me", headers=bearer(token))  # caches the snapshot

    with counting(app) as (round_trips, statements):
        assert client.get("/api/users/me", headers=bearer(token)).status_code == 200
    assert round_trips == ["EVALSHA"] and statements == [], (round_trips, statements)


def test_with_a_replica_a_login_waits_for_it_on_the_connection_that_wrote(make_app, accounts_settings,
                                                                          sentinel_group):
    app = make_app(deep_merge(accounts_settings, {"redis": {"url": sentinel_group.url}}))
    client = _user_and_client(app, "+8613800138005")
    app.extensions["redis"].script_load(session_scripts.OPEN)
    with counting(app) as (round_trips, _statements):
        token = login(client, "+8613800138005")["token"]
    wait = round_trips.index("WAIT")  # after the session script and ROLE, sent in one write
    assert round_trips[wait - 1] == "PIPELINE", round_trips
    replica = sentinel_group.client(sentinel_group.replica_port)
    session_id = token.split(".")[0]  # a token names its session
    key = f"{accounts_settings['redis']['prefix']}auth:session:{session_id}"
    assert replica.hget(key, "access") in (digest(token), digest(token).encode())


def test_without_a_replica_a_login_does_not_wait(make_app, accounts_settings, real_redis_settings):
    app = make_app(deep_merge(accounts_settings, real_redis_settings))
    client = _user_and_client(app, "+8613800138006")
    with counting(app) as (round_trips, _statements):
        login(client, "+8613800138006")
    assert "WAIT" not in round_trips and "PIPELINE" in round_trips, round_trips  # the script and ROLE


def test_a_replica_that_does_not_acknowledge_delays_a_login_by_the_wait_only(make_app, accounts_settings,
                                                                             sentinel_group, caplog):
    app = make_app(deep_merge(accounts_settings, {"redis": {"url": sentinel_group.url, "replica_wait_ms": 300}}))
    client = _user_and_client(app, "+8613800138007")
    login(client, "+8613800138007")  # warms the connections up
    replica = sentinel_group.processes[sentinel_group.replica_port]
    replica.send_signal(signal.SIGSTOP)  # still connected as far as the master knows, but never acknowledges
    logger = logging.getLogger("app.extensions")
    logger.addHandler(caplog.handler)  # create_app's logging configuration took caplog's handler off the root
    try:
        started = time.monotonic()
        login(client, "+8613800138007")
        took = time.monotonic() - started
    finally:
        replica.send_signal(signal.SIGCONT)
        logger.removeHandler(caplog.handler)
    assert 0.3 <= took < 1.5, took
    assert any("no Redis replica acknowledged a write within 300 ms" in r.getMessage() for r in caplog.records)
