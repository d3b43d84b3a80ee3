"""fabfile.py: the tasks are listed, `fab build` packs what runs and nothing else, remote tasks need hosts."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import PROJECT_DIR

FAB = str(Path(sys.executable).with_name("fab"))


def run_fab(*args: str, env: dict | None = None, status: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([FAB, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DEPLOY_HOSTS": "", **(env or {})})
    assert result.returncode == status, result.stdout + result.stderr
    return result


def test_fab_lists_the_release_tasks():
    listing = run_fab("--list").stdout
    for name in ("build", "deploy", "rollback", "releases"):
        assert f"  {name}" in listing


def test_fab_build_packs_what_runs_and_nothing_else(tmp_path):
    out = run_fab("build", env={"BUILD_DIR": str(tmp_path)}).stdout
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
    assert "hot_deploy.py" not in names and "fabfile.py" not in names  # development tools


def test_remote_tasks_without_hosts_say_how_to_name_them(tmp_path):
    result = run_fab("releases", env={"BUILD_DIR": str(tmp_path)}, status=2)
    assert "-H host1,host2 or DEPLOY_HOSTS" in result.stderr
    result = run_fab("deploy", env={"BUILD_DIR": str(tmp_path)}, status=2)
    assert list(tmp_path.iterdir()) == []  # nothing built for nowhere
