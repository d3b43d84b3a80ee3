"""`python manage.py create-admin`, with flags or at its prompts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app import create_app
from app.extensions import db
from app.models import User
from tests.support import PROJECT_DIR, SECRET


@pytest.fixture
def cli(database_url, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "testing",
           "SECRET_KEY": SECRET, "REDIS_URL": "memory://", "DATABASE_URL": database_url,
           "APP_LOG__FILE": str(tmp_path / "logs" / "app.log")}
    subprocess.run([sys.executable, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True,
                   capture_output=True, timeout=60)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", "create-admin", *args], cwd=PROJECT_DIR, env=env,
                              input=stdin, capture_output=True, text=True, timeout=60)

    yield run


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
