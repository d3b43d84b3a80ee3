"""`python manage.py create-admin`, with flags or at its prompts; `python manage.py prune-events`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from app.extensions import db
from app.models import SecurityEvent, User
from app.services.users import create_user
from tests.support import PROJECT_DIR, SECRET


@pytest.fixture
def manage(database_url, tmp_path):
    """``manage(*args, stdin="", env={})``: `python manage.py ARGS` on this test's database, migrated first."""
    base = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "testing",
            "SECRET_KEY": SECRET, "REDIS_URL": "memory://", "DATABASE_URL": database_url,
            "APP_LOG__FILE": str(tmp_path / "logs" / "app.log")}
    subprocess.run([sys.executable, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=base, check=True,
                   capture_output=True, timeout=60)

    def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env={**base, **(env or {})},
                              input=stdin, capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture
def cli(manage):
    return lambda *args, stdin="": manage("create-admin", *args, stdin=stdin)


def admins(test_settings) -> list[tuple[str, str, str]]:
    app = create_app(test_settings)
    with app.app_context():
        rows = [(u.phone, u.nickname, u.role) for u in db.session.scalars(db.select(User))]
        db.engine.dispose()
    return rows


def test_create_admin_with_flags(cli, test_settings):
    result = cli("--phone", "13800138000", "--nickname", "boss", "--password", "a strong secret")
    assert result.returncode == 0, result.stderr
    assert "+8613800138000" in result.stdout
    assert admins(test_settings) == [("+8613800138000", "boss", "admin")]


def test_create_admin_prompts_for_a_hidden_password(cli, test_settings):
    result = cli("--phone", "13800138000", "--nickname", "boss", stdin="a strong secret\na strong secret\n")
    assert result.returncode == 0, result.stderr
    assert "a strong secret" not in result.stdout
    assert admins(test_settings)[0][2] == "admin"


def test_create_admin_explains_a_bad_value(cli):
    result = cli("--phone", "12345", "--nickname", "boss", "--password", "a strong secret")
    assert result.returncode != 0
    assert "phone" in result.stderr


def test_create_admin_refuses_an_email_the_api_would_refuse(cli, test_settings):
    result = cli("--phone", "13800138000", "--nickname", "boss", "--password", "a strong secret",
                 "--email", "zoë@example.com")
    assert result.returncode != 0
    assert "email" in result.stderr
    assert admins(test_settings) == []


def test_create_admin_refuses_an_easily_guessed_password(cli, test_settings):
    result = cli("--phone", "13800138000", "--nickname", "boss", "--password", "password123")
    assert result.returncode != 0
    assert "password: password is too easy to guess. This is a very common password." in result.stderr
    assert admins(test_settings) == []


def add_events(test_settings, ages: dict[str, list[int]]) -> None:
    """For each phone, a user and one ``login`` event per age (days ago)."""
    app = create_app(test_settings)
    with app.app_context():
        now = datetime.now(UTC)
        for phone, days in ages.items():
            user = create_user(phone, "a strong secret", "n")
            db.session.add_all(SecurityEvent(user_id=user.id, type="login", at=now - timedelta(days=d)) for d in days)
        db.session.commit()
        db.engine.dispose()


def event_ages(test_settings) -> list[tuple[str, int]]:
    app = create_app(test_settings)
    with app.app_context():
        now = datetime.now(UTC)
        rows = db.session.execute(db.select(User.phone, SecurityEvent.at).join(User).order_by(SecurityEvent.id))
        ages = [(phone, (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).days) for phone, at in rows]
        db.engine.dispose()
    return ages


def test_prune_events_deletes_every_users_events_older_than_the_ttl(manage, test_settings):
    add_events(test_settings, {"+8613800138000": [200, 91, 89, 0], "+8613800138001": [120, 30]})
    result = manage("prune-events")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 security event(s) older than 90 days deleted"
    assert event_ages(test_settings) == [("+8613800138000", 89), ("+8613800138000", 0), ("+8613800138001", 30)]
    again = manage("prune-events")
    assert (again.returncode, again.stdout.strip()) == (0, "0 security event(s) older than 90 days deleted")


def test_prune_events_follows_auth_events_ttl_days(manage, test_settings):
    add_events(test_settings, {"+8613800138000": [10, 6, 0]})
    result = manage("prune-events", env={"APP_AUTH__EVENTS_TTL_DAYS": "7"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 security event(s) older than 7 days deleted"
    assert [days for _, days in event_ages(test_settings)] == [6, 0]
