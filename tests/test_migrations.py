"""Migrations: upgrade → downgrade base → upgrade on every configured backend; models and migrations agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import PROJECT_DIR, SECRET, fresh_database
from sqlalchemy import inspect, text

from app import create_app
from app.extensions import db

MIGRATIONS = PROJECT_DIR / "migrations"


def backends() -> list[str]:
    """SQLite always, plus each database this run is configured for (none is a skip: it is not collected)."""
    urls = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL"):
        urls.append(os.environ["TEST_DATABASE_URL"])
    urls += [u.strip() for u in os.environ.get("TEST_MIGRATION_DATABASE_URLS", "").split(",") if u.strip()]
    return urls


def head_revision() -> str:
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.fixture(params=backends(), ids=lambda url: url.split(":", 1)[0])
def migrated_app(request, tmp_path, test_settings):
    with fresh_database(request.param, tmp_path) as url:
        app = create_app({**test_settings, "database": {"url": url}})
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()


def state() -> tuple[set[str], str | None]:
    tables = set(inspect(db.engine).get_table_names())
    with db.engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    return tables, revision


def test_upgrade_downgrade_base_upgrade(migrated_app):
    flask_migrate.upgrade()
    assert state() == ({"users", "files", "alembic_version"}, head_revision())
    flask_migrate.downgrade(revision="base")
    tables, revision = state()
    assert not tables & {"users", "files"}
    assert revision is None
    flask_migrate.upgrade()
    assert state() == ({"users", "files", "alembic_version"}, head_revision())


def test_models_and_migrations_agree(migrated_app):
    """Fails when a model changed and nobody ran `python manage.py db migrate`."""
    flask_migrate.upgrade()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_migrated_schema_stores_a_user(migrated_app):
    from app.models import User

    flask_migrate.upgrade()
    db.session.add(User(phone="+8613800138000", nickname="小明", password_hash="x"))
    db.session.commit()
    user = db.session.scalar(db.select(User))
    assert (user.role, user.is_active, user.email) == ("user", True, None)
    assert user.created_at is not None


def run_cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_manage_py_and_flask_cli_run_the_migration_commands(tmp_path):
    database = tmp_path / "cli.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("APP_")},
        "APP_ENV": "testing", "SECRET_KEY": SECRET, "REDIS_URL": "memory://",
        "DATABASE_URL": f"sqlite:///{database}", "APP_LOG__FILE": str(tmp_path / "logs" / "app.log"),
    }
    manage = [sys.executable, "manage.py", "db"]
    head = head_revision()
    run_cli([*manage, "upgrade"], env)
    assert head in run_cli([*manage, "current"], env)
    assert "create users" in run_cli([*manage, "history"], env)
    flask = str(Path(sys.executable).with_name("flask"))
    assert head in run_cli([flask, "--app", "app", "db", "current"], env)
    run_cli([*manage, "downgrade", "base"], env)
    assert head not in run_cli([*manage, "current"], env)


def test_batch_mode_drops_a_column_on_sqlite_keeping_rows(tmp_path, test_settings):
    """render_as_batch: SQLite has no DROP COLUMN with constraints; batch mode copies the table instead."""
    import shutil

    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, directory)
    head = head_revision()
    (directory / "versions" / "ffff_drop_nickname.py").write_text(
        f'revision = "ffff"\ndown_revision = "{head}"\n'
        "from alembic import op\nimport sqlalchemy as sa\n\n"
        "def upgrade():\n    with op.batch_alter_table('users') as batch:\n        batch.drop_column('nickname')\n\n"
        "def downgrade():\n    with op.batch_alter_table('users') as batch:\n"
        "        batch.add_column(sa.Column('nickname', sa.String(64), nullable=False, server_default=''))\n"
    )
    app = create_app({**test_settings, "database": {"url": f"sqlite:///{tmp_path / 'batch.db'}"}})
    with app.app_context():
        flask_migrate.upgrade(directory=str(directory), revision=head)
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (phone, nickname, password_hash, created_at, updated_at) "
                              "VALUES ('+8613800138000', 'n', 'h', '2026-01-01', '2026-01-01')"))
        flask_migrate.upgrade(directory=str(directory))
        columns = {c["name"] for c in inspect(db.engine).get_columns("users")}
        assert "nickname" not in columns
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT phone FROM users")).scalar() == "+8613800138000"
        db.engine.dispose()
