"""fabfile.py: the tasks are listed, `fab build` packs what runs and nothing else, remote tasks need hosts."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from deploy.fabric_steps import printable, release_names
from tests.support import PROJECT_DIR, commit, copy_project

FAB = str(Path(sys.executable).with_name("fab"))


def run_fab(*args: str, env: dict | None = None, status: int = 0, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess:
    result = subprocess.run([FAB, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DEPLOY_HOSTS": "", **(env or {})})
    assert result.returncode == status, result.stdout + result.stderr
    return result


def test_fab_lists_the_release_tasks():
    listing = run_fab("--list").stdout
    for name in ("build", "deploy", "rollback", "releases", "learn-host-keys"):
        assert f"  {name}" in listing


def test_fab_build_packs_what_runs_and_nothing_else(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copy(PROJECT_DIR / ".gitignore", project / ".gitignore")
    head = commit(project, "ignore what git ignores here")
    ignored = ("app/instance/dev.sqlite", "app/.hypothesis/x", "migrations/.coverage")  # local data, caches
    for name in ignored:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("local\n")
    builds = tmp_path / "dist"
    out = run_fab("build", env={"BUILD_DIR": str(builds)}, cwd=project).stdout
    tarballs = list(builds.glob("flask-restx-starter-*.tar.gz"))
    assert len(tarballs) == 1 and str(tarballs[0]) in out
    assert tarballs[0].name.endswith(f"-{head[:12]}.tar.gz")
    with tarfile.open(tarballs[0]) as tar:
        names = tar.getnames()
        stamp = json.load(tar.extractfile("release.json"))
    assert stamp["commit"] == head and stamp["dirty"] is False and stamp["wheels_python"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp["built_at"])
    for expected in ("app/__init__.py", "migrations/env.py", "tornado_server.py", "manage.py",
                     "config_default.py", "logging.ini", "supervisord.ini", "requirements.txt",
                     "deploy/nginx.conf", "deploy/healthcheck.py"):
        assert expected in names
    for name in names:
        assert not name.startswith(("tests", ".venv", "instance", ".git", "dist")), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
    assert "config_override.py" not in names  # each host keeps its own
    assert "hot_deploy.py" not in names and "fabfile.py" not in names  # development tools
    assert "deploy/fabric_steps.py" not in names and "deploy/healthcheck.py" in names
    assert "deploy/fleet.py" not in names and "deploy/build.py" not in names
    assert not set(ignored) & set(names)  # git does not know them: a build stamped clean must not carry them


def test_fab_build_refuses_uncommitted_changes_unless_told(tmp_path):
    project = copy_project(tmp_path / "project")
    shutil.copy(PROJECT_DIR / ".gitignore", project / ".gitignore")
    commit(project, "ignore what git ignores here")
    builds = tmp_path / "dist"
    (project / "app" / "extra.py").write_text("EDITED = True\n")  # untracked files in what a build packs count
    refused = run_fab("build", env={"BUILD_DIR": str(builds)}, cwd=project, status=1)
    assert "uncommitted changes in what a build packs: commit first, or build anyway with --dirty" in refused.stderr
    assert not builds.exists() or not list(builds.iterdir())
    (project / "app" / "extra.py").unlink()
    (project / "config_override.py").write_text("configs = {'app': {'debug': True}}\n")  # not packed: no matter
    (project / "tests").mkdir()
    (project / "tests" / "test_new.py").write_text("")
    run_fab("build", env={"BUILD_DIR": str(builds)}, cwd=project)
    (project / "app" / "version.py").write_text((project / "app" / "version.py").read_text() + "# edited\n")
    (project / "app" / "new_module.py").write_text("NEW = True\n")  # untracked, not ignored: what --dirty is for
    (project / "app" / "instance").mkdir()
    (project / "app" / "instance" / "dev.sqlite").write_text("local\n")  # ignored (the project's .gitignore)
    out = run_fab("build", "--dirty", env={"BUILD_DIR": str(builds)}, cwd=project).stdout
    assert out.strip().endswith("-dirty.tar.gz")
    with tarfile.open(out.strip()) as tar:
        assert json.load(tar.extractfile("release.json"))["dirty"] is True
        assert tar.extractfile("app/version.py").read().decode().endswith("# edited\n")
        assert tar.extractfile("app/new_module.py").read() == b"NEW = True\n"
        assert "app/instance/dev.sqlite" not in tar.getnames()


def test_remote_tasks_without_hosts_say_how_to_name_them(tmp_path):
    result = run_fab("releases", env={"BUILD_DIR": str(tmp_path)}, status=2)
    assert "-H host1,host2 or DEPLOY_HOSTS" in result.stderr
    result = run_fab("deploy", env={"BUILD_DIR": str(tmp_path)}, status=2)
    assert list(tmp_path.iterdir()) == []  # nothing built for nowhere


def test_nginx_takes_the_largest_upload_the_app_accepts():
    """client_max_body_size in deploy/nginx.conf is files.max_size plus at most 1 MiB of multipart envelope."""
    configs = runpy.run_path(str(PROJECT_DIR / "config_default.py"))["configs"]
    sizes = re.findall(r"^\s*client_max_body_size (\d+)m;", (PROJECT_DIR / "deploy" / "nginx.conf").read_text(), re.M)
    assert sizes, "deploy/nginx.conf sets no client_max_body_size"
    max_size = configs["files"]["max_size"]
    for size in sizes:
        assert max_size < int(size) * 2**20 <= max_size + 2**20


def test_the_health_check_script_waits_for_200_and_says_why_not(live_server):
    server = live_server()
    script = [sys.executable, str(PROJECT_DIR / "deploy" / "healthcheck.py")]
    ok = subprocess.run([*script, f"{server.url}/api/health"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and '"database": "ok"' in ok.stdout
    missing = subprocess.run([*script, f"{server.url}/api/nothing", "--timeout", "0.5"], capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 1 and missing.stdout.startswith("404")


def test_what_a_host_says_is_shown_without_control_characters_and_only_release_names_count():
    """`fab releases` prints host-provided text: a compromised host must not rewrite the operator's terminal."""
    said = "\x1b[1A\x1b[2K\x1b[32mdeadbeef\x9b2J\r\n\u202eok\x00\x7f"
    assert printable(said) == "[1A[2K[32mdeadbeef2J ok"
    assert printable("api:api-0 RUNNING   pid 12, uptime 0:01:02\n") == "api:api-0 RUNNING   pid 12, uptime 0:01:02"
    names = ["20261129T104645.133341", "20991231T000000.000000\x1b[2K\r", "20261129T104233.755555", "*",
             "../20261129T104233.755555", "2026112\uff19T104233.755555", "20261129T104233.755555 x", ""]
    assert release_names(names) == ["20261129T104233.755555", "20261129T104645.133341"]
