"""Build and release with Fabric 3: `fab build`, `fab deploy`, `fab rollback [--release NAME]`, `fab releases`.

Hosts: `fab -H web1,deploy@web2:2222 deploy`, or DEPLOY_HOSTS=web1,web2 in the environment (-H wins).
Settings from the environment: DEPLOY_ROOT (default /srv/flask-restx-starter), DEPLOY_KEEP (releases kept,
default 5), DEPLOY_PYTHON (interpreter for the virtual environment, default python3), BUILD_DIR (where
`fab build` writes, default dist/). Authentication is by SSH key (ssh-agent, ~/.ssh/config or fabric.yaml):
there is no password here.

On each host:

    <root>/releases/<UTC time to the microsecond>/   one unpacked build; .venv links to venvs/<requirements hash>
    <root>/shared/config_override.py, shared/instance/   kept across releases and linked into each
    <root>/venvs/<hash>/                          reused while requirements.txt does not change
    <root>/current -> releases/<…>                switched atomically; supervisord.ini runs from here

This is the first working version: hosts are deployed one after another, each runs `manage.py db upgrade`
(idempotent) and restarts all its processes at once; health-checked rolling restarts with automatic rollback
come with the operations work.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric import task

PROJECT_DIR = Path(__file__).resolve().parent
NAME = "flask-restx-starter"
# What runs on a server: no tests, caches, virtual environments, instance data or local overrides.
RELEASE_FILES = ("app", "migrations", "deploy", "config_default.py", "logging.ini", "manage.py",
                 "tornado_server.py", "supervisord.ini", "requirements.txt")
EXCLUDED_NAMES = {"__pycache__", ".DS_Store"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def deploy_root() -> str:
    return os.environ.get("DEPLOY_ROOT", f"/srv/{NAME}")


def deploy_hosts() -> list[str]:
    return [h.strip() for h in os.environ.get("DEPLOY_HOSTS", "").split(",") if h.strip()]


def build_dir() -> Path:
    return Path(os.environ.get("BUILD_DIR", PROJECT_DIR / "dist"))


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = Path(info.name).name
    if name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def make_tarball() -> Path:
    from app import __version__

    out = build_dir()
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out / f"{NAME}-{__version__}-{stamp}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in RELEASE_FILES:
            if (PROJECT_DIR / name).exists():
                tar.add(PROJECT_DIR / name, arcname=name, filter=_keep)
    return path


def latest_tarball() -> Path:
    built = sorted(build_dir().glob(f"{NAME}-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return built[-1] if built else make_tarball()


@task
def build(c: Any) -> None:
    """Make a versioned tarball of what runs, under dist/ (or BUILD_DIR)."""
    print(make_tarball())


def _releases(c: Any) -> list[str]:
    listing = c.run(f"ls -1 {deploy_root()}/releases 2>/dev/null || true", hide=True).stdout
    return sorted(line for line in listing.split() if line and not line.endswith(".tar.gz"))


def _current(c: Any) -> str:
    return c.run(f"basename \"$(readlink {deploy_root()}/current)\" 2>/dev/null || true", hide=True).stdout.strip()


def _switch(c: Any, release: str) -> None:
    root = deploy_root()
    c.run(f"ln -sfn releases/{release} {root}/current.next && mv -T {root}/current.next {root}/current")


def _restart(c: Any) -> None:
    """Restart the processes, or start supervisord. The config is named through the `current` link so that
    supervisor's %(here)s stays `current` and a restart runs whatever `current` points at now."""
    ini = f"{deploy_root()}/current/supervisord.ini"
    python = f"{deploy_root()}/current/.venv/bin"
    if c.run(f"{python}/supervisorctl -c {ini} pid", hide=True, warn=True).ok:
        c.run(f"{python}/supervisorctl -c {ini} restart 'api:*'")
    else:
        c.run(f"{python}/supervisord -c {ini}")


@task(hosts=deploy_hosts())
def deploy(c: Any) -> None:
    """Upload the latest build, install it as a new release, migrate, switch `current`, restart."""
    tarball = latest_tarball()
    root, release = deploy_root(), datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    target = f"{root}/releases/{release}"
    c.run(f"mkdir -p {target} {root}/shared/instance/logs {root}/venvs")
    c.put(str(tarball), f"{target}.tar.gz")
    c.run(f"tar -xzf {target}.tar.gz -C {target} && rm {target}.tar.gz")
    c.run(f"test -f {root}/shared/config_override.py || printf 'configs = {{}}\\n' > {root}/shared/config_override.py")
    c.run(f"ln -sfn {root}/shared/config_override.py {target}/config_override.py")
    c.run(f"ln -sfn {root}/shared/instance {target}/instance")

    requirements = hashlib.sha256((PROJECT_DIR / "requirements.txt").read_bytes()).hexdigest()[:16]
    venv = f"{root}/venvs/{requirements}"
    python = os.environ.get("DEPLOY_PYTHON", "python3")
    # Built in place (a venv cannot be moved: its scripts name its path); .complete marks a finished one.
    c.run(f"test -f {venv}/.complete || (rm -rf {venv} && {python} -m venv {venv} && {venv}/bin/pip install -q "
          f"-r {target}/requirements.txt supervisor && touch {venv}/.complete)")
    c.run(f"ln -sfn {venv} {target}/.venv")
    c.run(f"cd {target} && .venv/bin/python manage.py db upgrade")
    _switch(c, release)
    _restart(c)
    keep = int(os.environ.get("DEPLOY_KEEP", "5"))
    for old in _releases(c)[:-keep]:
        c.run(f"rm -rf {root}/releases/{old}")
    print(f"{c.host}: deployed {release}")


@task(hosts=deploy_hosts())
def rollback(c: Any, release: str = "") -> None:
    """Switch `current` to the previous release, or to --release NAME, and restart."""
    releases, current = _releases(c), _current(c)
    if release:
        if release not in releases:
            raise SystemExit(f"{c.host}: no release {release}; have {', '.join(releases)}")
        target = release
    else:
        older = [r for r in releases if r < current]
        if not older:
            raise SystemExit(f"{c.host}: no release before {current}")
        target = older[-1]
    _switch(c, target)
    _restart(c)
    print(f"{c.host}: rolled back {current} → {target}")


@task(hosts=deploy_hosts())
def releases(c: Any) -> None:
    """List the releases on each host; `*` marks the current one."""
    current = _current(c)
    for name in _releases(c):
        print(f"{c.host}: {'*' if name == current else ' '} {name}")


if __name__ == "__main__":  # `python fabfile.py` builds, for machines without the fab command
    start = time.monotonic()
    print(make_tarball(), f"({time.monotonic() - start:.1f}s)")
