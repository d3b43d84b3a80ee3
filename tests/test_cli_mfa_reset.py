"""`python manage.py mfa-reset`: an operator turns off the second factor of a user who lost it."""

from __future__ import annotations

import os
import subprocess
import sys

from app.extensions import db
from app.models import RecoveryCode, SecurityEvent, User
from tests.fixtures.accounts import enable_totp, login
from tests.support import PROJECT_DIR, SECRET

PHONE = "+8613800138000"


def mfa_reset(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "testing",
           "SECRET_KEY": SECRET, "REDIS_URL": "memory://", "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "manage.py", "mfa-reset", *args], cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=60)


def test_mfa_reset_turns_the_factor_off_voids_the_codes_and_records_it(make_app, accounts_settings, make_user,
                                                                       database_url):
    app = make_app(accounts_settings)
    client = app.test_client()
    user_id = make_user(PHONE)
    token = login(client, PHONE)["token"]
    enable_totp(client, token)

    refused = mfa_reset(database_url, "--phone", "13800138000")  # no --yes: asks, and stdin says nothing
    assert refused.returncode != 0
    done = mfa_reset(database_url, "--phone", "138 0013 8000", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"user {user_id}" in done.stdout

    with app.app_context():
        assert db.session.get(User, user_id).totp_secret is None
        assert db.session.query(RecoveryCode).filter_by(user_id=user_id).count() == 0
        assert db.session.query(SecurityEvent).filter_by(user_id=user_id, type="mfa_disabled").count() == 1
    assert "token" in login(client, PHONE)  # the password alone signs in again


def test_mfa_reset_names_what_is_wrong(make_app, accounts_settings, make_user, database_url):
    make_app(accounts_settings)
    unknown = mfa_reset(database_url, "--phone", "13900139000", "--yes")
    assert unknown.returncode != 0 and "no account" in unknown.stderr
    make_user(PHONE)
    off = mfa_reset(database_url, "--phone", PHONE, "--yes")
    assert off.returncode != 0 and "not on" in off.stderr
