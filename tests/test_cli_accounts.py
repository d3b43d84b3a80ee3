"""Operators' account commands: `manage.py mfa-reset` (a user lost their second factor) and `manage.py
end-sessions` (one user's sessions, or everyone's, end on every process sharing the Redis)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.extensions import db
from app.models import RecoveryCode, SecurityEvent, User
from tests.fixtures.accounts import bearer, enable_totp, login
from tests.support import PROJECT_DIR, SECRET, run_manage

PHONE = "+8613800138000"


def manage(database_url: str, *args: str, redis: dict | None = None) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` on this test's database, and on its Redis namespace when given (else memory://)."""
    env = {"DATABASE_URL": database_url}
    if redis:
        env.update({"REDIS_URL": redis["url"], "APP_REDIS__PREFIX": redis["prefix"]})
    return run_manage(*args, env=env)


OTHER = "+8613900139000"


@pytest.fixture
def shared(make_app, test_settings, real_redis_settings, make_user):
    """A client of an app on a real Redis (which the command's process shares), with two users."""
    app = make_app({**real_redis_settings, "sms": {"gateway": "file"}})
    make_user(PHONE)
    make_user(OTHER)
    return app, app.test_client(), real_redis_settings["redis"]


def test_mfa_reset_turns_the_factor_off_voids_the_codes_ends_the_sessions_and_records_it(shared, database_url):
    app, client, redis = shared
    token = login(client, PHONE)["token"]
    enable_totp(client, token)
    user_id = client.get("/api/users/me", headers=bearer(token)).get_json()["data"]["id"]

    refused = manage(database_url, "mfa-reset", "--phone", "13800138000", redis=redis)  # no --yes: asks, no answer
    assert refused.returncode != 0
    done = manage(database_url, "mfa-reset", "--phone", "138 0013 8000", "--yes", redis=redis)
    assert done.returncode == 0, done.stderr
    assert f"user {user_id}" in done.stdout

    assert client.get("/api/users/me", headers=bearer(token)).status_code == 401
    with app.app_context():
        assert db.session.get(User, user_id).totp_secret is None
        assert db.session.query(RecoveryCode).filter_by(user_id=user_id).count() == 0
        assert db.session.query(SecurityEvent).filter_by(user_id=user_id, type="mfa_disabled").count() == 1
    assert "token" in login(client, PHONE)  # the password alone signs in again


def test_mfa_reset_names_what_is_wrong(shared, database_url):
    _, _, redis = shared
    unknown = manage(database_url, "mfa-reset", "--phone", "13700137000", "--yes", redis=redis)
    assert unknown.returncode != 0 and "no account" in unknown.stderr
    off = manage(database_url, "mfa-reset", "--phone", PHONE, "--yes", redis=redis)
    assert off.returncode != 0 and "not on" in off.stderr


@pytest.mark.parametrize("args", [["mfa-reset", "--phone", PHONE, "--yes"], ["end-sessions", "--phone", PHONE],
                                  ["end-sessions", "--all"]], ids=["mfa-reset", "end-sessions-phone", "end-all"])
def test_the_commands_refuse_a_memory_redis_they_cannot_reach(make_app, accounts_settings, make_user, database_url,
                                                             args):
    """With memory:// every process has its own store: the command could not end the server's sessions, and
    must not say it did (found by following the docs on the development setup)."""
    make_app(accounts_settings)
    make_user(PHONE)
    refused = manage(database_url, *args)
    assert refused.returncode != 0 and "memory://" in refused.stderr, refused.stderr
    assert "ended" not in refused.stdout


def test_end_sessions_of_one_user(shared, database_url):
    _, client, redis = shared
    mine, theirs = login(client, PHONE)["token"], login(client, OTHER)["token"]
    done = manage(database_url, "end-sessions", "--phone", "13800138000", redis=redis)
    assert done.returncode == 0, done.stderr
    assert client.get("/api/users/me", headers=bearer(mine)).status_code == 401
    assert client.get("/api/users/me", headers=bearer(theirs)).status_code == 200


def test_end_sessions_of_everyone(shared, database_url):
    _, client, redis = shared
    tokens = [login(client, PHONE)["token"], login(client, PHONE)["token"], login(client, OTHER)["token"]]
    done = manage(database_url, "end-sessions", "--all", redis=redis)
    assert done.returncode == 0, done.stderr
    assert "3 session(s) ended" in done.stdout
    assert [client.get("/api/users/me", headers=bearer(t)).status_code for t in tokens] == [401, 401, 401]
    token = login(client, OTHER)["token"]  # a new session, to read the user's events with
    types = [e["type"] for e in client.get("/api/auth/events", headers=bearer(token)).get_json()["data"]["items"]]
    assert types[:2] == ["login", "session_ended"]


def test_end_sessions_needs_one_of_its_options(database_url, make_app, accounts_settings):
    make_app(accounts_settings)
    assert manage(database_url, "end-sessions").returncode != 0
    assert manage(database_url, "end-sessions", "--all", "--phone", PHONE).returncode != 0


def test_a_setting_manage_py_refuses_is_one_line_without_its_value(database_url):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "testing",
           "SECRET_KEY": SECRET, "REDIS_URL": "memory://", "DATABASE_URL": database_url,
           "APP_AUTH__TOKEN_TTL": "not-a-number-s3cret"}
    refused = subprocess.run([sys.executable, "manage.py", "routes"], cwd=PROJECT_DIR, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "manage.py: environment variable APP_AUTH__TOKEN_TTL is not a valid int (the value is not shown: it may be "
        "a secret)"]
