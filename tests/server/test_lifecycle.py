"""Start-up work done before serving: refusals and migrations."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import inspect

from app.config import ConfigError
from app.extensions import db
from app.server.lifecycle import make_app, prepare
from app.server.options import StartupError
from tests.support import PROJECT_DIR


def test_settings_the_app_refuses_are_a_startup_error() -> None:
    def refusing() -> Any:
        raise ConfigError("refusing to start in production with the default SECRET_KEY")

    with pytest.raises(StartupError, match="SECRET_KEY"):
        make_app(refusing)


def test_several_processes_on_memory_redis_are_a_startup_error(make_app: Any) -> None:
    app = make_app({"redis": {"url": "memory://"}}, create_tables=False)
    with pytest.raises(StartupError, match="memory://"):
        prepare(app, 2)


def test_pending_migrations_are_applied_before_serving(make_app: Any) -> None:
    app = make_app({"database": {"auto_migrate": True}}, create_tables=False)
    prepare(app, 1)
    with app.app_context():
        assert {"users", "files", "alembic_version"} <= set(inspect(db.engine).get_table_names())


def test_the_app_does_not_import_its_server(tmp_path: Any) -> None:
    script = ("import sys; from app import create_app; create_app({'log': {'file': sys.argv[1] + '/app.log'}, 'database': {'url': 'sqlite:///' + sys.argv[1] + '/app.db'}}); "
              "print(sorted(m for m in sys.modules if m.startswith('app.server')))")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
