"""Build and release with Fabric 3: `fab build`, `fab deploy`, `fab rollback [--release NAME]`, `fab releases`.

Hosts: `fab -H web1,deploy@web2:2222 deploy`, or DEPLOY_HOSTS=web1,web2 in the environment (-H wins).
Settings, all from the environment:

    DEPLOY_HOSTS    comma-separated hosts, [user@]host[:port]
    DEPLOY_USER     SSH user for DEPLOY_HOSTS entries that name none (default: yours, or ~/.ssh/config's)
    DEPLOY_ROOT     where releases live on each host (default /srv/flask-restx-starter)
    DEPLOY_KEEP     releases kept per host (default 5)
    DEPLOY_PYTHON   interpreter that makes the hosts' virtual environments (default python3)
    BUILD_DIR       where `fab build` writes and `fab deploy` takes the newest build from (default dist/)

Authentication is by SSH key only (ssh-agent, ~/.ssh/config or fabric.yaml): no password is read or kept here.
`fab build deploy` builds and ships in one go; `fab deploy` alone ships the newest build (building one if none).

On each host:

    <root>/releases/<UTC time to the microsecond>/   one unpacked build; .venv links to venvs/<requirements hash>;
                                                 .complete once migrated (a failed deploy removes its own)
    <root>/shared/config_override.py, shared/instance/   kept across releases and linked into each
    <root>/venvs/<hash>/                          reused while requirements.txt does not change
    <root>/current -> releases/<…>                switched atomically (rename of a new link over the old)

supervisord runs from <root>/current/supervisord.ini, so a restart runs whatever `current` points at.
Checked by hand against a real sshd (deploy, releases, rollback, rollback --release, a failing migration);
the automated SSH tests come with the operations issue.

Not yet (the operations issue): hosts are deployed one after another, with no health check and no automatic
rollback; every host runs `manage.py db upgrade` (idempotent, but not coordinated); all processes restart at
once; rollback switches code only (no `db downgrade`); a changed supervisord.ini needs `supervisorctl update`
by hand; the servers' pip needs the package index.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric import Connection, task
from invoke.exceptions import Exit

PROJECT_DIR = Path(__file__).resolve().parent
NAME = "flask-restx-starter"
# What runs on a server: the app, its migrations, deploy/ (server configuration) and the top-level .py and .ini
# files, except the local override (each host has its own, in shared/) and the development tools.
RELEASE_DIRS = ("app", "migrations", "deploy")
RELEASE_TOP_LEVEL = ("*.py", "*.ini", "requirements.txt")
NOT_RELEASED = {"config_override.py", "hot_deploy.py", "fabfile.py"}
EXCLUDED_NAMES = {"__pycache__", ".DS_Store"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
RELEASE_FORMAT = "%Y%m%dT%H%M%S.%f"  # sorts in time order; sub-second, so two deploys never collide
q = shlex.quote


def deploy_root() -> str:
    return os.environ.get("DEPLOY_ROOT", f"/srv/{NAME}")


def deploy_hosts() -> list[str]:
    user = os.environ.get("DEPLOY_USER", "")
    hosts = [h.strip() for h in os.environ.get("DEPLOY_HOSTS", "").split(",") if h.strip()]
    return [h if "@" in h or not user else f"{user}@{h}" for h in hosts]


def build_dir() -> Path:
    return Path(os.environ.get("BUILD_DIR", PROJECT_DIR / "dist"))


def release_files() -> list[Path]:
    """Top-level paths that go into a build."""
    files = {p for pattern in RELEASE_TOP_LEVEL for p in PROJECT_DIR.glob(pattern) if p.is_file()}
    dirs = {PROJECT_DIR / name for name in RELEASE_DIRS if (PROJECT_DIR / name).is_dir()}
    return sorted(p for p in files | dirs if p.name not in NOT_RELEASED)


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
    path = out / f"{NAME}-{__version__}-{datetime.now(UTC).strftime(RELEASE_FORMAT)}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for item in release_files():
            tar.add(item, arcname=item.name, filter=_keep)
    return path


def newest_tarball() -> Path:
    built = sorted(build_dir().glob(f"{NAME}-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return built[-1] if built else make_tarball()


def _remote(c: Any) -> Connection:
    """The task's SSH connection; a clear error when no host was named."""
    if not isinstance(c, Connection):
        raise Exit("no hosts: name them with -H host1,host2 or DEPLOY_HOSTS", code=2)
    return c


@task
def build(c: Any) -> None:
    """Make a versioned tarball of what runs, under dist/ (or BUILD_DIR)."""
    print(make_tarball())


def _releases(c: Connection) -> list[str]:
    """Releases that were installed completely (marked .complete), oldest first."""
    listing = c.run(f"cd {q(deploy_root())}/releases 2>/dev/null && ls -1d */.complete || true", hide=True).stdout
    return sorted(line.split("/")[0] for line in listing.split() if line)


def _current(c: Connection) -> str:
    current = f"{q(deploy_root())}/current"
    return c.run(f'test -L {current} && basename "$(readlink {current})" || true', hide=True).stdout.strip()


def _switch(c: Connection, release: str) -> None:
    root = q(deploy_root())
    c.run(f"ln -sfn releases/{q(release)} {root}/current.next && mv -T {root}/current.next {root}/current")


def _restart(c: Connection) -> None:
    """Restart the API processes if supervisord runs, else start it (from the new `current`)."""
    current = f"{q(deploy_root())}/current"
    ini, bin_dir = f"{current}/supervisord.ini", f"{current}/.venv/bin"
    if c.run(f"{bin_dir}/supervisorctl -c {ini} pid", hide=True, warn=True).ok:
        c.run(f"{bin_dir}/supervisorctl -c {ini} restart 'api:*'")
    else:
        c.run(f"{bin_dir}/supervisord -c {ini}")


def _install(c: Connection, tarball: Path, release: str) -> None:
    """Unpack, link the shared files, provide the venv, migrate; mark the release complete."""
    root = deploy_root()
    target, shared = q(f"{root}/releases/{release}"), q(f"{root}/shared")
    c.put(str(tarball), f"{root}/releases/{release}.tar.gz")
    c.run(f"tar -xzf {target}.tar.gz -C {target} && rm {target}.tar.gz")
    c.run(f"test -f {shared}/config_override.py || printf 'configs = {{}}\\n' > {shared}/config_override.py")
    c.run(f"ln -sfn {shared}/config_override.py {target}/config_override.py")
    c.run(f"ln -sfn {shared}/instance {target}/instance")

    requirements = hashlib.sha256((PROJECT_DIR / "requirements.txt").read_bytes()).hexdigest()[:16]
    venv = q(f"{root}/venvs/{requirements}")
    python = q(os.environ.get("DEPLOY_PYTHON", "python3"))
    # Built in place (a venv cannot be moved: its scripts name its path); .complete marks a finished one.
    c.run(f"test -f {venv}/.complete || (rm -rf {venv} && {python} -m venv {venv} && {venv}/bin/pip install -q "
          f"-r {target}/requirements.txt supervisor && touch {venv}/.complete)")
    c.run(f"ln -sfn {venv} {target}/.venv")
    c.run(f"cd {target} && .venv/bin/python manage.py db upgrade")
    c.run(f"touch {target}/.complete")


@task(hosts=deploy_hosts())
def deploy(c: Any) -> None:
    """Upload the newest build, install it as a new release, migrate, switch `current`, restart."""
    c = _remote(c)
    tarball = newest_tarball()
    root, release = deploy_root(), datetime.now(UTC).strftime(RELEASE_FORMAT)
    target, shared = q(f"{root}/releases/{release}"), q(f"{root}/shared")
    print(f"{c.host}: deploying {tarball.name} as {release}")
    c.run(f"mkdir -p {target} {shared}/instance/logs {q(root)}/venvs")
    try:
        _install(c, tarball, release)
    except BaseException:
        c.run(f"rm -rf {target} {target}.tar.gz", warn=True)  # `current` still names the previous release
        raise
    _switch(c, release)
    _restart(c)
    keep = int(os.environ.get("DEPLOY_KEEP", "5"))
    for old in _releases(c)[:-keep]:
        c.run(f"rm -rf {q(f'{root}/releases/{old}')}")
    print(f"{c.host}: deployed {release}")


@task(hosts=deploy_hosts())
def rollback(c: Any, release: str = "") -> None:
    """Switch `current` to the previous release, or to --release NAME, and restart."""
    c = _remote(c)
    releases, current = _releases(c), _current(c)
    if release:
        if release not in releases:
            raise Exit(f"{c.host}: no release {release}; have {', '.join(releases) or 'none'}", code=1)
        target = release
    else:
        older = [r for r in releases if r < current]
        if not older:
            raise Exit(f"{c.host}: no release before {current or '(none current)'}", code=1)
        target = older[-1]
    _switch(c, target)
    _restart(c)
    print(f"{c.host}: rolled back {current} -> {target}")


@task(hosts=deploy_hosts())
def releases(c: Any) -> None:
    """List the releases on each host; `*` marks the current one."""
    c = _remote(c)
    current = _current(c)
    for name in _releases(c):
        print(f"{c.host}: {'*' if name == current else ' '} {name}")
