"""The steps of a deploy on one host: install a release, migrate, switch, restart behind health checks, mark,
list and prune. deploy/fleet.py runs them across the hosts."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fabric import Connection

from deploy.build import RELEASE_NAME, requirements_hash
from deploy.hosts import deploy_root, printable, q
from deploy.service import start_supervisord

PROGRAM = "api"  # the supervisor groups in supervisord.ini: the API processes, the job workers, the scheduler
WORKERS = "worker"
BEAT = "beat"
GOOD = ".good"  # in a release every host of its deploy switched to and found healthy: rollback goes only there


class DeployError(Exception):
    """A step on one host failed; the message says which."""


def health_timeout() -> float:
    return float(os.environ.get("DEPLOY_HEALTH_TIMEOUT", "30"))


def release_names(names: list[str]) -> list[str]:
    """The names among ``names`` a deploy gives its releases (TIME_FORMAT), oldest first; anything else in
    releases/ is not a release."""
    return sorted(name for name in names if RELEASE_NAME.fullmatch(name))


# ------------------------------------------------------------------------------------------- on one host


def installed_releases(c: Connection, marker: str = ".complete") -> list[str]:
    """Releases that were installed completely (marked .complete; or found good, ``marker`` GOOD), oldest first."""
    listing = c.run(f"cd {q(deploy_root())}/releases 2>/dev/null && printf '%s\\0' */{marker} || true",
                    hide=True).stdout
    return release_names([path.split("/")[0] for path in listing.split("\0")])


def current_release(c: Connection) -> str:
    current = f"{q(deploy_root())}/current"
    return c.run(f'test -L {current} && basename "$(readlink {current})" || true', hide=True).stdout.strip()


def _switch(c: Connection, release: str) -> None:
    root = q(deploy_root())
    c.run(f"ln -sfn releases/{q(release)} {root}/current.next && mv -T {root}/current.next {root}/current")


def install(c: Connection, tarball: Path, release: str) -> None:
    """Unpack, link the shared files, provide the venv; mark the release complete. A failure removes what it
    made (the release, a virtual environment it was building)."""
    root = deploy_root()
    target, shared = q(f"{root}/releases/{release}"), q(f"{root}/shared")
    c.run(f"mkdir -p {target} {shared}/instance/logs {q(root)}/venvs")
    c.put(str(tarball), f"{root}/releases/{release}.tar.gz")
    c.run(f"tar -xzf {target}.tar.gz -C {target} && rm {target}.tar.gz")
    c.run(f"ln -sfn {shared}/config_override.py {target}/config_override.py")
    c.run(f"ln -sfn {shared}/instance {target}/instance")

    venv = q(f"{root}/venvs/{requirements_hash(tarball)}")
    python = q(os.environ.get("DEPLOY_PYTHON", "python3"))
    source = f"$(test -d {target}/wheels && echo '--no-index --find-links {target}/wheels')"
    # Built in place (a venv cannot be moved: its scripts name its path); .complete marks a finished one, and one
    # that fails half-way is removed at once.
    c.run(f"test -f {venv}/.complete || (rm -rf {venv} && {python} -m venv {venv} && {venv}/bin/pip install -q "
          f"{source} -r {target}/requirements.txt && touch {venv}/.complete) || (rm -rf {venv}; exit 1)")
    c.run(f"ln -sfn {venv} {target}/.venv && rm -rf {target}/wheels && touch {target}/.complete")


def remove_release(c: Connection, release: str) -> bool:
    """Remove ``release`` from this host, whatever state it reached (an upload, a half-unpacked tree); False (and
    a warning) when the host cannot be reached: the next deploy's prune removes it there."""
    path = f"{deploy_root()}/releases/{release}"
    try:
        return bool(c.run(f"rm -rf {q(path)} {q(path + '.tar.gz')}", hide=True, warn=True).ok)
    except Exception as exc:
        print(f"{c.host}: WARNING: could not remove {release}: {exc}", file=sys.stderr)
        return False


def settings_fingerprint(c: Connection, release: str) -> str:
    """The host's settings as ``release`` loads them, checked (production's rules) and fingerprinted
    (`manage.py deploy-check`); DeployError with the reason when they are refused."""
    check = c.run(f"cd {q(f'{deploy_root()}/releases/{release}')} && .venv/bin/python manage.py deploy-check",
                  hide=True, warn=True)
    if not check.ok:  # the last line only: a traceback from an older release would quote the settings' source
        said = (check.stderr or check.stdout).strip().splitlines()
        raise DeployError(f"its settings are refused: {printable(said[-1]) if said else f'exit {check.exited}'}")
    return str(json.loads(check.stdout.strip().splitlines()[-1])["secret_key"])


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
        status = _supervisorctl(c, "status", hide=True, warn=True).stdout
        raise DeployError(printable(f"{process} is not running: {status}"))
    return value


def _wait_healthy(c: Connection, process: str) -> None:
    """Wait until supervisor's ``process`` answers 200 on /api/health on its port (from its --port argument)."""
    current = f"{q(deploy_root())}/current"
    port = _argument(c, process, "--port")
    check = c.run(f"{current}/.venv/bin/python {current}/deploy/healthcheck.py "
                  f"http://127.0.0.1:{int(port)}/api/health --timeout {health_timeout()}", hide=True, warn=True)
    if not check.ok:
        raise DeployError(printable(f"{process} (port {port}) failed its health check: {check.stdout.strip()}"))
    serves = _served_release(check.stdout)
    expected = current_release(c)
    if serves and serves != expected:  # a process that did not restart, or a build from before release.json
        raise DeployError(printable(f"{process} (port {port}) serves release {serves}, not {expected}"))
    print(f"{c.host}: " + printable(f"{process} healthy on port {port}: {check.stdout.strip()}"))


def _served_release(said: str) -> str | None:
    """The release a healthy process reports (/api/health data.build.release), if it says."""
    try:
        return json.loads(said)["build"]["release"]
    except (ValueError, KeyError, TypeError):
        return None


def _wait_answering(c: Connection, process: str) -> None:
    """Wait until supervisor's Celery worker ``process`` answers a ping under its node name (its -n argument, such
    as worker-0@%h), asked with the host's settings from the release (`manage.py jobs-ping`)."""
    node = _argument(c, process, "-n")
    ping = c.run(f"cd {q(deploy_root())}/current && .venv/bin/python manage.py jobs-ping {q(node)} "
                 f"--timeout {health_timeout()}", hide=True, warn=True)
    if not ping.ok:
        said = (ping.stderr or ping.stdout).strip()
        raise DeployError(printable(f"job worker {process} does not answer a ping: {said}"))
    print(f"{c.host}: " + printable(f"{process} answering: {ping.stdout.strip()}"))


def _wait_running(c: Connection, process: str) -> None:
    """Wait until supervisor says RUNNING for ``process`` (up for its startsecs)."""
    deadline = time.monotonic() + health_timeout()
    while True:
        status = _supervisorctl(c, f"status {q(process)}", hide=True, warn=True).stdout.strip()
        if " RUNNING " in f"{status} ":
            print(f"{c.host}: " + printable(f"{process} running"))
            return
        if time.monotonic() > deadline or not any(word in status for word in ("STARTING", "BACKOFF")):
            raise DeployError(printable(f"{process} is not running: {status}"))
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
        raise DeployError(printable(f"supervisor runs no {group}:* processes: {status.strip()}"))
    return names


def go_to(c: Connection, release: str) -> None:
    """Switch `current` to ``release`` and restart onto it, health-checked."""
    _switch(c, release)
    _restart(c)


def mark_good(c: Connection, release: str) -> None:
    c.run(f"touch {q(f'{deploy_root()}/releases/{release}/{GOOD}')}", hide=True)


def stop_all(c: Connection) -> None:
    """Stop supervisord and everything it runs, and remove `current`: the host serves nothing, as before its first
    release."""
    _supervisorctl(c, "shutdown", hide=True, warn=True)
    c.run(f"rm -f {q(deploy_root())}/current", hide=True)


def describe(c: Connection) -> list[str]:
    """Lines for `fab releases`: each complete release (current, good, commit, build time) and the release each
    supervised process runs (its working directory: supervisord starts each in `current`, resolved then). What the
    host says is shown through printable(): only release names of a deploy's form, no control characters."""
    root = q(deploy_root())
    current, complete, good = current_release(c), installed_releases(c), set(installed_releases(c, GOOD))
    stamps = c.run(f"cd {root}/releases && for r in {' '.join(complete)}; do printf '%s %s\\0' \"$r\" "
                   f"\"$(cat $r/release.json 2>/dev/null)\"; done", hide=True, warn=True).stdout if complete else ""
    lines = []
    for line in stamps.split("\0"):
        name, _, raw = line.partition(" ")
        if name not in complete:  # names are checked; the shell ran only those
            continue
        try:
            stamp = json.loads(raw) if raw else {}
        except ValueError:
            stamp = {}
        stamp = stamp if isinstance(stamp, dict) else {}
        commit = printable(str(stamp.get("commit") or "unknown"))[:12] + (" dirty" if stamp.get("dirty") else "")
        built = printable(str(stamp.get("built_at") or "?"))[:20]
        mark = "*" if name == current else " "
        state = "good" if name in good else "not proven"
        lines.append(f"{mark} {name}  {commit:<18} built {built:<20} {state}")
    status = _supervisorctl(c, "status", hide=True, warn=True).stdout if current else ""
    running = [(printable(line.split()[0]), line.split("pid ", 1)[1].split(",")[0]) for line in status.splitlines()
               if " RUNNING " in line and "pid " in line]
    running = [(name, pid) for name, pid in running if pid.isdigit()]
    if running:
        cwd = c.run("; ".join(f"printf '%s\\0' \"$(readlink /proc/{pid}/cwd)\"" for _, pid in running), hide=True,
                    warn=True)
        for (name, _), path in zip(running, cwd.stdout.split("\0"), strict=False):
            lines.append(f"  runs {name}: {printable(path.rsplit('/', 1)[-1]) or 'unknown'}")
    elif current:
        lines.append("  runs nothing: supervisord is not running")
    return lines


def prune(c: Connection, keep: int) -> list[str]:
    """Keep the newest ``keep`` releases found good (and always `current`); remove the rest — older good ones, and
    releases never found good (left by a run cut off or not put back) — and the virtual environments no kept
    release uses; what was removed. Runs under the deploy lock, so no other run is installing meanwhile."""
    root = deploy_root()
    current, good = current_release(c), installed_releases(c, GOOD)
    kept = set(good[-keep:]) | {current}
    listing = c.run(f"ls -1 {q(root)}/releases", hide=True, warn=True).stdout.split()
    gone = [name for name in listing if name not in kept]
    if gone:
        c.run(f"cd {q(root)}/releases && rm -rf " + " ".join(q(name) for name in gone), hide=True)
    used = c.run(f"for r in {q(root)}/releases/*/.venv; do basename \"$(readlink $r)\"; done", hide=True,
                 warn=True).stdout.split()
    venvs = c.run(f"ls -1 {q(root)}/venvs", hide=True, warn=True).stdout.split()
    unused = [v for v in venvs if v not in used]
    if unused:
        c.run(f"cd {q(root)}/venvs && rm -rf " + " ".join(q(v) for v in unused), hide=True)
    return [f"releases/{name}" for name in gone] + [f"venvs/{v}" for v in unused]
