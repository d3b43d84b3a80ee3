"""Simultaneous logins for one account against a real two-process server, each from its own client address:
no more password checks fail than the account's limit, however many are in flight at once."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fixtures.accounts import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
PHONE, WRONG = "+8613800138000", "wrong password"
LIMIT, BURST = 5, 16


@pytest.fixture
def server(live_server, real_redis_settings, test_settings):
    from app import create_app
    from app.extensions import db
    from app.services.users import create_user

    redis = real_redis_settings["redis"]
    env = {"REDIS_URL": redis["url"], "APP_REDIS__PREFIX": redis["prefix"], "APP_SERVER__THREADS": "8",
           "APP_AUTH__MAX_FAILURES_PER_ACCOUNT": str(LIMIT)}
    started = live_server("--processes", "2", env=env)  # it creates the tables
    app = create_app(test_settings)
    with app.app_context():
        create_user(PHONE, PASSWORD, "n")
        db.engine.dispose()
    return started


def log_in(port: int, client: int, password: str) -> tuple[int, dict[str, str]]:
    """POST /api/auth/login from 127.0.0.<client>: the status and headers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(f"127.0.0.{client}", 0))
    try:
        connection.request("POST", "/api/auth/login", json.dumps({"account": PHONE, "password": password}),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()


def at_once(port: int, passwords: list[str]) -> list[int]:
    """Every password tried at the same moment, each from its own address; the statuses in order."""
    barrier = threading.Barrier(len(passwords))

    def attempt(index: int) -> int:
        barrier.wait()
        return log_in(port, 10 + index, passwords[index])[0]

    with ThreadPoolExecutor(len(passwords)) as pool:
        return list(pool.map(attempt, range(len(passwords))))


def test_simultaneous_wrong_passwords_fail_no_more_checks_than_the_accounts_limit(server):
    statuses = at_once(server.port, [WRONG] * BURST)
    assert sorted(statuses) == [401] * LIMIT + [429] * (BURST - LIMIT)
    status, headers = log_in(server.port, 200, PASSWORD)
    assert status == 429 and 0 < int(headers["retry-after"]) <= 900


def test_a_burst_of_guesses_with_the_right_one_last_in_line_is_refused(server):
    statuses = at_once(server.port, [WRONG] * (BURST - 1) + [PASSWORD])
    if statuses[-1] == 200:  # it won a place among the first checks, before the limit was used up
        assert statuses.count(401) <= 2 * LIMIT
    else:
        assert statuses.count(401) <= LIMIT and statuses[-1] == 429


def test_the_right_password_below_the_limit_still_logs_in(server):
    assert [log_in(server.port, 10 + i, WRONG)[0] for i in range(LIMIT - 1)] == [401] * (LIMIT - 1)
    assert log_in(server.port, 100, PASSWORD)[0] == 200
    assert log_in(server.port, 101, WRONG)[0] == 401
