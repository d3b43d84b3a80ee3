"""The steps of fabfile.py's tasks: settings, the build, the work on one host, and undoing a failed run."""

from __future__ import annotations

import hashlib
import os
import runpy
import shlex
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabric import Connection
from invoke.exceptions import Exit

from deploy.service import start_supervisord

PROJECT_DIR = Path(__file__).resolve().parent.parent
NAME = "flask-restx-starter"
# What runs on a server: the app, its migrations, deploy/ (server configuration and the health check) and the
# top-level .py and .ini files, except the local override (each host has its own, in shared/) and the
# development tools (this module and the fabfile among them).
RELEASE_DIRS = ("app", "migrations", "deploy")
RELEASE_TOP_LEVEL = ("*.py", "*.ini", "requirements.txt")
NOT_RELEASED = {"config_override.py", "hot_deploy.py", "fabfile.py", "deploy/__init__.py", "deploy/fabric_steps.py"}
EXCLUDED_NAMES = {"__pycache__", ".DS_Store"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
RELEASE_FORMAT = "%Y%m%dT%H%M%S.%f"  # sorts in time order; sub-second, so two deploys never collide
PROGRAM = "api"  # the supervisor groups in supervisord.ini: the API processes, the job workers, the scheduler
WORKERS = "worker"
BEAT = "beat"
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
    if info.name in NOT_RELEASED or name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES):
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


def app_version() -> str:
    """The version in app/version.py, read without importing the app (and all it imports)."""
    return str(runpy.run_path(str(PROJECT_DIR / "app" / "version.py"))["__version__"])


def make_tarball(wheels: Path | None = None) -> Path:
    out = build_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}-{app_version()}-{datetime.now(UTC).strftime(RELEASE_FORMAT)}.tar.gz"
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


# ------------------------------------------------------------------------------------------- on one host


def remote(c: Any) -> Connection:
    """The task's SSH connection; a clear error when no host was named."""
    if not isinstance(c, Connection):
        raise Exit("no hosts: name them with -H host1,host2 or DEPLOY_HOSTS", code=2)
    return c


def installed_releases(c: Connection) -> list[str]:
    """Releases that were installed completely (marked .complete), oldest first."""
    listing = c.run(f"cd {q(deploy_root())}/releases 2>/dev/null && ls -1d */.complete || true", hide=True).stdout
    return sorted(line.split("/")[0] for line in listing.split() if line)


def current_release(c: Connection) -> str:
    current = f"{q(deploy_root())}/current"
    return c.run(f'test -L {current} && basename "$(readlink {current})" || true', hide=True).stdout.strip()


def _switch(c: Connection, release: str) -> None:
    root = q(deploy_root())
    c.run(f"ln -sfn releases/{q(release)} {root}/current.next && mv -T {root}/current.next {root}/current")


def install(c: Connection, tarball: Path, release: str) -> None:
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


def migrate(c: Connection, release: str) -> None:
    print(f"{c.host}: migrating the database (once, for every host)")
    c.run(f"cd {q(f'{deploy_root()}/releases/{release}')} && .venv/bin/python manage.py db upgrade")


def _supervisorctl(c: Connection, command: str, **kwargs: Any) -> Any:
    current = f"{q(deploy_root())}/current"
    return c.run(f"{current}/.venv/bin/supervisorctl -c {current}/supervisord.ini {command}", **kwargs)


def _argument(c: Connection, process: str, option: str) -> str:
    """The value of ``option`` in the command line of supervisor's running ``process``; DeployError when it is not
    running."""
    pid = _supervisorctl(c, f"pid {q(process)}", hide=True, warn=True).stdout.strip()
    value = c.run(f"tr '\\0' '\\n' < /proc/{int(pid) if pid.isdigit() else 0}/cmdline "
                  f"| grep -A1 -x -- {q(option)} | tail -n 1", hide=True, warn=True).stdout.strip()
    if not pid.isdigit() or pid == "0" or not value:
        raise DeployError(f"{process} is not running: {_supervisorctl(c, 'status', hide=True, warn=True).stdout}")
    return value


def _wait_healthy(c: Connection, process: str) -> None:
    """Wait until supervisor's ``process`` answers 200 on /api/health on its port (from its --port argument)."""
    current = f"{q(deploy_root())}/current"
    port = _argument(c, process, "--port")
    check = c.run(f"{current}/.venv/bin/python {current}/deploy/healthcheck.py "
                  f"http://127.0.0.1:{int(port)}/api/health --timeout {health_timeout()}", hide=True, warn=True)
    if not check.ok:
        raise DeployError(f"{process} (port {port}) failed its health check: {check.stdout.strip()}")
    print(f"{c.host}: {process} healthy on port {port}: {check.stdout.strip()}")


def _wait_answering(c: Connection, process: str) -> None:
    """Wait until supervisor's Celery worker ``process`` answers a ping under its node name (its -n argument, such
    as worker-0@%h), asked with the host's settings from the release (`manage.py jobs-ping`)."""
    node = _argument(c, process, "-n")
    ping = c.run(f"cd {q(deploy_root())}/current && .venv/bin/python manage.py jobs-ping {q(node)} "
                 f"--timeout {health_timeout()}", hide=True, warn=True)
    if not ping.ok:
        raise DeployError(f"job worker {process} does not answer a ping: {(ping.stderr or ping.stdout).strip()}")
    print(f"{c.host}: {process} answering: {ping.stdout.strip()}")


def _wait_running(c: Connection, process: str) -> None:
    """Wait until supervisor says RUNNING for ``process`` (up for its startsecs)."""
    deadline = time.monotonic() + health_timeout()
    while True:
        status = _supervisorctl(c, f"status {q(process)}", hide=True, warn=True).stdout.strip()
        if " RUNNING " in f"{status} ":
            print(f"{c.host}: {process} running")
            return
        if time.monotonic() > deadline or not any(word in status for word in ("STARTING", "BACKOFF")):
            raise DeployError(f"{process} is not running: {status}")
        time.sleep(1)


def _restart(c: Connection) -> None:
    """Start supervisord from `current`, or apply its changed file and restart its processes one at a time: the
    API processes, each healthy before the next stops; then the job workers, each stopped warm (its running tasks
    finish first) and answering a ping before the next; then beat."""
    running = _supervisorctl(c, "pid", hide=True, warn=True).ok
    if running:
        _supervisorctl(c, "update", hide=True)  # a changed [program:…] restarts its group here
    else:
        start_supervisord(c, deploy_root())  # through systemd where its unit is installed
    for group, wait in ((PROGRAM, _wait_healthy), (WORKERS, _wait_answering), (BEAT, _wait_running)):
        for name in _processes(c, group):
            if running:
                _supervisorctl(c, f"restart {q(name)}", hide=True, warn=True)  # the check says what matters
            wait(c, name)


def _processes(c: Connection, group: str) -> list[str]:
    """The supervisor process names of ``group``: api:api-0, api:api-1, or beat for a program of one process named
    as its group. Only the API must exist: a release from before the job workers has no worker or beat group
    (after `update`, supervisor runs what its file says)."""
    status = _supervisorctl(c, f"status '{group}:*'", hide=True, warn=True).stdout
    names = [line.split()[0] for line in status.splitlines()
             if line.startswith(f"{group}:") or line.split()[:1] == [group]]
    if not names and group != PROGRAM and "no such group" in status:
        print(f"{c.host}: no {group} programs in this release's supervisord.ini")
    elif not names:
        raise DeployError(f"supervisor runs no {group}:* processes: {status.strip()}")
    return names


def go_to(c: Connection, release: str) -> None:
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


def deploy_run() -> DeployRun:
    global _run
    if _run is None:
        _run = DeployRun(newest_tarball(), datetime.now(UTC).strftime(RELEASE_FORMAT))
    return _run


def undo(run: DeployRun) -> list[str]:
    """Put every host this run switched back on the release it ran, newest first, and remove the new release
    there; the hosts that could not be put back."""
    stuck = []
    for c, previous in reversed(run.switched):
        try:
            if not previous:
                raise DeployError(f"no earlier release to go back to; {run.release} stays current")
            print(f"{c.host}: rolling back to {previous}")
            go_to(c, previous)
        except Exception as exc:  # keep undoing the other hosts; this one needs a person
            print(f"{c.host}: NOT ROLLED BACK, see to this host by hand: {exc}", file=sys.stderr)
            stuck.append(c.host)
            continue
        c.run(f"rm -rf {q(f'{deploy_root()}/releases/{run.release}')}", warn=True)
    return stuck
