"""Migrations: upgrade → downgrade → upgrade on every configured backend; models and migrations agree.

Backends: SQLite always, plus ``TEST_DATABASE_URL`` and each URL in ``TEST_MIGRATION_DATABASE_URLS``
(comma-separated). They are read at collection time, so an unconfigured backend has no test at all; a
configured one that cannot be reached is skipped (a failure with ``REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from sqlalchemy import Column, MetaData, String, inspect, text
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from tests.fixtures.databases import fresh_database
from tests.support import PROJECT_DIR, SECRET

MIGRATIONS = PROJECT_DIR / "migrations"


def backend_urls() -> list[str]:
    """"sqlite", then each other database URL this run is configured for, once each."""
    configured = [os.environ.get("TEST_DATABASE_URL", "")]
    configured += os.environ.get("TEST_MIGRATION_DATABASE_URLS", "").split(",")
    urls = ["sqlite"]
    for url in (u.strip() for u in configured):
        if url and not url.startswith("sqlite") and url not in urls:
            urls.append(url)
    return urls


def backend_id(url: str) -> str:
    return make_url(url).get_backend_name() if "://" in url else url


def app_settings(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Just enough for create_app: this test's database, no Redis server, logs in the test's directory."""
    return {
        "app": {"env": "testing", "secret_key": SECRET},
        "database": {"url": database_url},
        "redis": {"url": "memory://"},
        "log": {"file": str(tmp_path / "logs" / "app.log")},
    }


def head_revision() -> str:
    """The single head of migrations/ (alembic raises when two revisions branch off)."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@pytest.fixture(params=backend_urls(), ids=backend_id)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app context on an empty database of this test's own, on each configured backend."""
    with fresh_database(request.param, tmp_path) as url:
        app = create_app(app_settings(url, tmp_path))
        with app.app_context():
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()  # before the schema or database is dropped


def schema_state() -> tuple[set[str], str | None]:
    """The tables in the database and the revision alembic_version records."""
    tables = set(inspect(db.engine).get_table_names())
    with db.engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    return tables, revision


def schema_differences(metadata: MetaData) -> list[Any]:
    """What `manage.py db migrate` would write, comparing ``metadata`` with the database as env.py does."""
    options = {**current_app.extensions["migrate"].configure_args, "target_metadata": metadata}
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=options), metadata)


def test_upgrade_downgrade_base_upgrade_creates_drops_and_recreates_every_table(empty_database: Flask) -> None:
    model_tables = set(db.metadata.tables)
    head = head_revision()

    flask_migrate.upgrade()
    assert schema_state() == (model_tables | {"alembic_version"}, head)

    flask_migrate.downgrade(revision="base")
    assert schema_state() == ({"alembic_version"}, None)

    flask_migrate.upgrade()
    assert schema_state() == (model_tables | {"alembic_version"}, head)


def test_models_and_migrations_agree(empty_database: Flask) -> None:
    """Fails when a model changed and nobody ran `python manage.py db migrate`."""
    flask_migrate.upgrade()
    assert schema_differences(db.metadata) == []


def test_the_comparison_notices_a_model_that_drifted(empty_database: Flask) -> None:
    """The check above is not blind: a new column and a changed type show up on this backend."""
    flask_migrate.upgrade()
    drifted = MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.tables.values():
        table.to_metadata(drifted)
    users = drifted.tables["users"]
    users.append_column(Column("nickname_pinyin", String(64)))
    users.c.nickname.type = String(users.c.nickname.type.length + 16)

    differences = schema_differences(drifted)

    added = [(d[0], d[2], d[3].name) for d in differences if isinstance(d, tuple) and d[0] == "add_column"]
    changed = [(d[0][0], d[0][2], d[0][3]) for d in differences if isinstance(d, list)]
    assert ("add_column", "users", "nickname_pinyin") in added
    assert ("modify_type", "users", "nickname") in changed


def test_migrated_schema_fills_its_server_defaults(empty_database: Flask) -> None:
    """A row written by SQL that names neither role nor is_active gets the migration's defaults."""
    from app.models import User

    flask_migrate.upgrade()
    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (phone, nickname, password_hash, created_at, updated_at) "
                 "VALUES (:phone, :nickname, 'h', :now, :now)"),
            {"phone": "+8613800138000", "nickname": "小明", "now": "2026-01-01 00:00:00"},
        )
    user = db.session.scalar(db.select(User))
    assert user is not None
    assert (user.phone, user.nickname, user.role, user.is_active, user.email) == (
        "+8613800138000", "小明", "user", True, None,
    )


def test_on_postgresql_trigram_indexes_serve_the_user_lists_q(empty_database: Flask) -> None:
    """The SQL list_users emits for q is planned on the migration's indexes (their expressions match its LIKEs);
    a downgrade drops them. Other backends get none."""
    from sqlalchemy import event

    from app.models.user import SEARCH_INDEXES
    from app.services.records import Paging
    from app.services.users import list_users

    flask_migrate.upgrade()
    on_postgresql = db.engine.dialect.name == "postgresql"
    assert {index["name"] for index in inspect(db.engine).get_indexes("users")} & SEARCH_INDEXES == (
        SEARCH_INDEXES if on_postgresql else set())
    if not on_postgresql:
        return
    seen: list[tuple[str, Any]] = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, sql, params, *_: seen.append((sql, params)))
    list_users(Paging(by_cursor=True), "Bulk7")
    db.session.rollback()  # its transaction's lock on users would hold up the DROP INDEX below
    [(sql, params)] = [(sql, params) for sql, params in seen if "LIKE" in sql]
    with db.engine.begin() as conn:
        # an empty table, where any plan is cheap: rule out the scans of the whole table (or of its primary key)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params))
    assert all(f"Bitmap Index Scan on {name}" in plan for name in SEARCH_INDEXES), plan

    flask_migrate.downgrade(revision="-1")
    assert not {index["name"] for index in inspect(db.engine).get_indexes("users")} & SEARCH_INDEXES


# --- the commands as a user types them (SQLite) ------------------------------------------------


def cli_env(database: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a command run against ``database``, whatever this shell's APP_* say."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    env.update({
        "APP_ENV": "testing",
        "SECRET_KEY": SECRET,
        "REDIS_URL": "memory://",
        "DATABASE_URL": f"sqlite:///{database}",
        "APP_LOG__FILE": str(tmp_path / "cli-logs" / "app.log"),
    })
    return env


def run_commands(env: dict[str, str], *commands: list[str]) -> list[str]:
    """Run commands side by side in the project directory; their outputs, after checking each succeeded."""
    processes = [
        subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for args in commands
    ]
    outputs = []
    for args, process in zip(commands, processes, strict=True):
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, f"{args} exited with {process.returncode}:\n{output}"
        outputs.append(output)
    return outputs


def run_command(args: list[str], env: dict[str, str]) -> str:
    return run_commands(env, args)[0]


def sqlite_tables(database: Path) -> set[str]:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{database}")
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_manage_py_and_flask_run_the_migration_commands(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    env = cli_env(database, tmp_path)
    manage = [sys.executable, "manage.py", "db"]
    flask = str(Path(sys.executable).with_name("flask"))
    head = head_revision()

    run_command([*manage, "upgrade"], env)
    assert sqlite_tables(database) == set(db.metadata.tables) | {"alembic_version"}  # every model's table
    current, history, flask_current = run_commands(  # read-only: side by side, to save a second or two
        env, [*manage, "current"], [*manage, "history"], [flask, "--app", "app", "db", "current"]
    )
    assert f"{head} (head)" in current
    assert head in history
    assert "create users" in history
    assert f"{head} (head)" in flask_current

    run_command([*manage, "downgrade", "base"], env)
    assert sqlite_tables(database) == {"alembic_version"}


def test_an_autogenerated_column_drop_runs_in_batch_mode_on_sqlite_and_keeps_the_rows(tmp_path: Path) -> None:
    """`manage.py db migrate` renders a batch operation (SQLite cannot drop a column of a constrained
    table in place), and applying it copies the table with its rows, indexes and references intact."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, directory, ignore=shutil.ignore_patterns("__pycache__"))
    database = tmp_path / "batch.db"
    app = create_app(app_settings(f"sqlite:///{database}", tmp_path))
    with app.app_context():
        flask_migrate.upgrade(directory=str(directory))
        with db.engine.begin() as conn:  # a column the models no longer have, and data in the table
            conn.execute(text("ALTER TABLE users ADD COLUMN legacy VARCHAR(20)"))
            conn.execute(text(
                "INSERT INTO users (id, phone, email, nickname, password_hash, role, is_active, created_at, "
                "updated_at, legacy) VALUES (7, '+8613800138000', 'a@example.com', '小明', 'h', 'admin', 1, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 'old')"
            ))
            conn.execute(text(
                "INSERT INTO files (owner_id, key, filename, size, content_type, sha256, backend, created_at) "
                "VALUES (7, 'k1', 'a.txt', 3, 'text/plain', 'x', 'local', '2026-01-01 00:00:00')"
            ))
        db.engine.dispose()

    run_command(
        [sys.executable, "manage.py", "db", "migrate", "-d", str(directory), "-m", "drop legacy"],
        cli_env(database, tmp_path),
    )
    [revision] = directory.glob("versions/*_drop_legacy.py")
    source = revision.read_text()
    assert "with op.batch_alter_table('users'" in source
    assert "batch_op.drop_column('legacy')" in source

    with app.app_context():
        flask_migrate.upgrade(directory=str(directory))
        with db.engine.connect() as conn:
            users = conn.execute(text("SELECT id, phone, email, nickname, role FROM users")).all()
            files = conn.execute(text("SELECT owner_id, key FROM files")).all()
        assert users == [(7, "+8613800138000", "a@example.com", "小明", "admin")]
        assert files == [(7, "k1")]
        assert "legacy" not in {column["name"] for column in inspect(db.engine).get_columns("users")}
        assert schema_differences(db.metadata) == []  # indexes and constraints survived the copy
        db.engine.dispose()
