"""fabfile.py: the tasks are listed and `fab build` packs what runs and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import PROJECT_DIR

FAB = str(Path(sys.executable).with_name("fab"))


def run_fab(*args: str, env: dict | None = None) -> str:
    result = subprocess.run([FAB, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_fab_lists_the_release_tasks():
    listing = run_fab("--list")
    for name in ("build", "deploy", "rollback", "releases"):
        assert f"  {name}" in listing


def test_fab_build_packs_what_runs_and_nothing_else(tmp_path):
    out = run_fab("build", env={"BUILD_DIR": str(tmp_path)})
    tarballs = list(tmp_path.glob("flask-restx-starter-*.tar.gz"))
    assert len(tarballs) == 1 and str(tarballs[0]) in out
    with tarfile.open(tarballs[0]) as tar:
        names = tar.getnames()
    for expected in ("app/__init__.py", "migrations/env.py", "tornado_server.py", "manage.py",
                     "config_default.py", "logging.ini", "supervisord.ini", "requirements.txt"):
        assert expected in names
    for name in names:
        assert not name.startswith(("tests", ".venv", "instance", ".git", "dist")), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
    assert "config_override.py" not in names  # each host keeps its own
