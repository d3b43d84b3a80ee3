"""Checking a token costs one Redis round trip and at most one SQL query."""

from __future__ import annotations

import pytest
from conftest import bearer, login
from sqlalchemy import event

from app.extensions import db


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


def test_an_authenticated_request_costs_one_redis_round_trip_and_one_query(app, client, make_user):
    make_user("+8613800138000")
    token = login(client, "+8613800138000")["token"]
    redis_client = app.extensions["redis"]
    round_trips: list[str] = []
    statements: list[str] = []
    original = redis_client.execute_command

    def counting(*args, **kwargs):
        round_trips.append(str(args[0]))
        return original(*args, **kwargs)

    original_pipeline = redis_client.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = original_pipeline(*args, **kwargs)
        execute = pipe.execute
        pipe.execute = lambda *a, **k: (round_trips.append("PIPELINE"), execute(*a, **k))[1]
        return pipe

    redis_client.execute_command = counting
    redis_client.pipeline = counting_pipeline
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        response = client.get("/api/users/me", headers=bearer(token))
    finally:
        redis_client.execute_command = original
        redis_client.pipeline = original_pipeline
    assert response.status_code == 200
    assert len(round_trips) == 1, round_trips
    assert round_trips[0].upper() in ("EVALSHA", "EVAL")
    assert len(statements) <= 1, statements
