"""Build and release with Fabric 3: `fab build [--wheels]`, `fab deploy`, `fab rollback [--release R]`, `fab releases`.

Hosts: `fab -H web1,deploy@web2:2222 deploy`, or DEPLOY_HOSTS=web1,web2 in the environment (-H wins); an SSH
key with `-i KEY`, ssh-agent or ~/.ssh/config. No password is read or kept here. Settings, from the environment:

    DEPLOY_HOSTS           comma-separated hosts, [user@]host[:port]
    DEPLOY_USER            SSH user for DEPLOY_HOSTS entries that name none (default: yours, or ~/.ssh/config's)
    DEPLOY_ROOT            where releases live on each host (default /srv/flask-restx-starter)
    DEPLOY_KEEP            releases kept per host (default 5)
    DEPLOY_PYTHON          interpreter that makes the hosts' virtual environments (default python3)
    DEPLOY_HEALTH_TIMEOUT  seconds a restarted process has to answer 200 on /api/health (default 30)
    BUILD_DIR              where `fab build` writes and `fab deploy` takes the newest build from (default dist/)

`fab deploy` goes through the hosts one at a time. On each: upload the newest build (building one if none),
unpack it into releases/<run time>, link shared/config_override.py and shared/instance/ into it, give it a
virtual environment (reused while requirements.txt is unchanged; from the build's wheels/ without the package
index when built with --wheels), run `manage.py db upgrade` (on the first host only: the hosts share one
database), switch `current` atomically, then restart the supervisor processes one at a time, each answering 200
on /api/health before the next stops, so a load balancer over them never runs dry. If anything fails on a host,
that host and every host this run already switched go back to the release they ran, and the new release is
removed from them; the hosts after it are not touched. Migrations must therefore keep the previous release
working (add columns and tables first, drop them a release later): a rollback does not downgrade the database.

On each host:

    <root>/releases/<UTC time to the microsecond>/   one unpacked build; .venv links to venvs/<requirements hash>;
                                                 .complete once installed
    <root>/shared/config_override.py, shared/instance/   kept across releases and linked into each
    <root>/venvs/<hash>/                          built in place, reused while requirements.txt does not change
    <root>/current -> releases/<…>                switched atomically (rename of a new link over the old)

supervisord runs from <root>/current/supervisord.ini, so a restart runs whatever `current` points at, and a
changed supervisord.ini is applied with `supervisorctl update` before the rolling restart.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric import Connection, task
from invoke.exceptions import Exit

PROJECT_DIR = Path(__file__).resolve().parent
NAME = "flask-restx-starter"
# What runs on a server: the app, its migrations, deploy/ (server configuration and the health check) and the
# top-level .py and .ini files, except the local override (each host has its own, in shared/) and the
# development tools.
RELEASE_DIRS = ("app", "migrations", "deploy")
RELEASE_TOP_LEVEL = ("*.py", "*.ini", "requirements.txt")
NOT_RELEASED = {"config_override.py", "hot_deploy.py", "fabfile.py"}
EXCLUDED_NAMES = {"__pycache__", ".DS_Store"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
RELEASE_FORMAT = "%Y%m%dT%H%M%S.%f"  # sorts in time order; sub-second, so two deploys never collide
PROGRAM = "api"  # the supervisor group in supervisord.ini
q = shlex.quote


class DeployError(Exception):
    """A step on one host failed; the message says which."""


def deploy_root() -> str:
    return os.environ.get("DEPLOY_ROOT", f"/srv/{NAME}")


def deploy_hosts() -> list[str]:
    user = os.environ.get("DEPLOY_USER", "")
    hosts = [h.strip() for h in os.environ.get("DEPLOY_HOSTS", "").split(",") if h.strip()]
    return [h if "@" in h or not user else f"{user}@{h}" for h in hosts]


def build_dir() -> Path:
    return Path(os.environ.get("BUILD_DIR", PROJECT_DIR / "dist"))


def health_timeout() -> float:
    return float(os.environ.get("DEPLOY_HEALTH_TIMEOUT", "30"))


# ---------------------------------------------------------------------------------------------------- build


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


def build_wheels() -> Path:
    """Wheels of every requirement, for hosts without the package index; kept in BUILD_DIR/wheels and reused."""
    wheels = build_dir() / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
                    "-r", str(PROJECT_DIR / "requirements.txt")], check=True)
    return wheels


def make_tarball(wheels: Path | None = None) -> Path:
    from app import __version__

    out = build_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}-{__version__}-{datetime.now(UTC).strftime(RELEASE_FORMAT)}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for item in release_files():
            tar.add(item, arcname=item.name, filter=_keep)
        if wheels:
            tar.add(wheels, arcname="wheels", filter=_keep)
    return path


def newest_tarball() -> Path:
    built = sorted(build_dir().glob(f"{NAME}-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return built[-1] if built else make_tarball()


def requirements_hash(tarball: Path) -> str:
    """Names the virtual environment a build needs: the hash of its requirements.txt."""
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("requirements.txt")
        assert member is not None
        return hashlib.sha256(member.read()).hexdigest()[:16]


@task(help={"wheels": "also pack wheels of every requirement, so hosts install without the package index"})
def build(c: Any, wheels: bool = False) -> None:
    """Make a versioned tarball of what runs, under dist/ (or BUILD_DIR)."""
    print(make_tarball(build_wheels() if wheels else None))


# ------------------------------------------------------------------------------------------- on one host


def _remote(c: Any) -> Connection:
    """The task's SSH connection; a clear error when no host was named."""
    if not isinstance(c, Connection):
        raise Exit("no hosts: name them with -H host1,host2 or DEPLOY_HOSTS", code=2)
    return c


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


def _install(c: Connection, tarball: Path, release: str) -> None:
    """Unpack, link the shared files, provide the venv; mark the release complete."""
    root = deploy_root()
    target, shared = q(f"{root}/releases/{release}"), q(f"{root}/shared")
    c.run(f"mkdir -p {target} {shared}/instance/logs {q(root)}/venvs")
    c.put(str(tarball), f"{root}/releases/{release}.tar.gz")
    c.run(f"tar -xzf {target}.tar.gz -C {target} && rm {target}.tar.gz")
    c.run(f"test -f {shared}/config_override.py || printf 'configs = {{}}\\n' > {shared}/config_override.py")
    c.run(f"ln -sfn {shared}/config_override.py {target}/config_override.py")
    c.run(f"ln -sfn {shared}/instance {target}/instance")

    venv = q(f"{root}/venvs/{requirements_hash(tarball)}")
    python = q(os.environ.get("DEPLOY_PYTHON", "python3"))
    source = f"$(test -d {target}/wheels && echo '--no-index --find-links {target}/wheels')"
    # Built in place (a venv cannot be moved: its scripts name its path); .complete marks a finished one.
    c.run(f"test -f {venv}/.complete || (rm -rf {venv} && {python} -m venv {venv} && {venv}/bin/pip install -q "
          f"{source} -r {target}/requirements.txt && touch {venv}/.complete)")
    c.run(f"ln -sfn {venv} {target}/.venv && rm -rf {target}/wheels && touch {target}/.complete")


def _migrate(c: Connection, release: str) -> None:
    print(f"{c.host}: migrating the database (once, for every host)")
    c.run(f"cd {q(f'{deploy_root()}/releases/{release}')} && .venv/bin/python manage.py db upgrade")


def _supervisorctl(c: Connection, command: str, **kwargs: Any) -> Any:
    current = f"{q(deploy_root())}/current"
    return c.run(f"{current}/.venv/bin/supervisorctl -c {current}/supervisord.ini {command}", **kwargs)


def _wait_healthy(c: Connection, process: str) -> None:
    """Wait until supervisor's ``process`` answers 200 on /api/health on its port (from its --port argument)."""
    current = f"{q(deploy_root())}/current"
    pid = _supervisorctl(c, f"pid {q(process)}", hide=True, warn=True).stdout.strip()
    port = c.run(f"tr '\\0' '\\n' < /proc/{int(pid or 0)}/cmdline | grep -A1 -x -- --port | tail -n 1",
                 hide=True, warn=True).stdout.strip()
    if not pid.isdigit() or pid == "0" or not port.isdigit():
        raise DeployError(f"{process} is not running: {_supervisorctl(c, 'status', hide=True, warn=True).stdout}")
    check = c.run(f"{current}/.venv/bin/python {current}/deploy/healthcheck.py "
                  f"http://127.0.0.1:{port}/api/health --timeout {health_timeout()}", hide=True, warn=True)
    if not check.ok:
        raise DeployError(f"{process} (port {port}) failed its health check: {check.stdout.strip()}")
    print(f"{c.host}: {process} healthy on port {port}: {check.stdout.strip()}")


def _restart(c: Connection) -> None:
    """Start supervisord from `current`, or apply its changed file and restart its processes one at a time."""
    current = f"{q(deploy_root())}/current"
    if _supervisorctl(c, "pid", hide=True, warn=True).ok:
        _supervisorctl(c, "update", hide=True)  # a changed [program:api] restarts its group here
        names = _processes(c)
        for name in names:
            _supervisorctl(c, f"restart {q(name)}", hide=True, warn=True)  # the health check says what matters
            _wait_healthy(c, name)
    else:
        c.run(f"{current}/.venv/bin/supervisord -c {current}/supervisord.ini")
        for name in _processes(c):
            _wait_healthy(c, name)


def _processes(c: Connection) -> list[str]:
    """The supervisor process names of the API group, e.g. api:api-0, api:api-1."""
    status = _supervisorctl(c, f"status '{PROGRAM}:*'", hide=True, warn=True).stdout
    names = [line.split()[0] for line in status.splitlines() if line.startswith(f"{PROGRAM}:")]
    if not names:
        raise DeployError(f"supervisor runs no {PROGRAM}:* processes: {status.strip()}")
    return names


def _go_to(c: Connection, release: str) -> None:
    """Switch `current` to ``release`` and restart onto it, health-checked."""
    _switch(c, release)
    _restart(c)


# ------------------------------------------------------------------------------------ across the hosts


@dataclass
class DeployRun:
    """One `fab deploy`: Fabric calls the task once per host, in order; this is what the calls share."""

    tarball: Path
    release: str
    migrated: bool = False
    switched: list[tuple[Connection, str]] = field(default_factory=list)  # (host, the release it ran before)


_run: DeployRun | None = None


def _deploy_run() -> DeployRun:
    global _run
    if _run is None:
        _run = DeployRun(newest_tarball(), datetime.now(UTC).strftime(RELEASE_FORMAT))
    return _run


def _undo(run: DeployRun) -> list[str]:
    """Put every host this run switched back on the release it ran, newest first, and remove the new release
    there; the hosts that could not be put back."""
    stuck = []
    for c, previous in reversed(run.switched):
        try:
            if not previous:
                raise DeployError(f"no earlier release to go back to; {run.release} stays current")
            print(f"{c.host}: rolling back to {previous}")
            _go_to(c, previous)
        except Exception as exc:  # keep undoing the other hosts; this one needs a person
            print(f"{c.host}: NOT ROLLED BACK, see to this host by hand: {exc}", file=sys.stderr)
            stuck.append(c.host)
            continue
        c.run(f"rm -rf {q(f'{deploy_root()}/releases/{run.release}')}", warn=True)
    return stuck


@task(hosts=deploy_hosts())
def deploy(c: Any) -> None:
    """Install the newest build on this host, migrate (first host only), switch, restart one process at a time."""
    c = _remote(c)
    run = _deploy_run()
    root, release = deploy_root(), run.release
    print(f"{c.host}: deploying {run.tarball.name} as {release}")
    previous = _current(c)
    try:
        try:
            _install(c, run.tarball, release)
        except BaseException:
            c.run(f"rm -rf {q(f'{root}/releases/{release}')} {q(f'{root}/releases/{release}.tar.gz')}", warn=True)
            raise
        if not run.migrated:
            _migrate(c, release)
            run.migrated = True
        run.switched.append((c, previous))
        _go_to(c, release)
    except BaseException as exc:
        print(f"{c.host}: deploy failed: {exc}", file=sys.stderr)
        stuck = _undo(run)
        after = f"not rolled back: {', '.join(stuck)}" if stuck else "every host runs what it ran before"
        raise Exit(f"deploy of {release} failed on {c.host}; {after}", code=1) from None
    keep = max(int(os.environ.get("DEPLOY_KEEP", "5")), 2)
    for old in _releases(c)[:-keep]:
        c.run(f"rm -rf {q(f'{root}/releases/{old}')}")
    print(f"{c.host}: deployed {release}")


@task(hosts=deploy_hosts())
def rollback(c: Any, release: str = "") -> None:
    """Switch `current` to the previous release, or to --release NAME, and restart one process at a time."""
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
    try:
        _go_to(c, target)
    except DeployError as exc:
        raise Exit(f"{c.host}: rolled back {current} -> {target}, but {exc}", code=1) from None
    print(f"{c.host}: rolled back {current} -> {target}")


@task(hosts=deploy_hosts())
def releases(c: Any) -> None:
    """List the releases on each host; `*` marks the current one."""
    c = _remote(c)
    current = _current(c)
    for name in _releases(c):
        print(f"{c.host}: {'*' if name == current else ' '} {name}")
