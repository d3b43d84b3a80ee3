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
on /api/health before the next stops, so a load balancer over them never runs dry; then the Celery workers, each
stopped warm (its running tasks finish) and answering `manage.py jobs-ping` before the next, and beat, which must
be RUNNING. The workers are restarted and checked whatever jobs.backend says (with `thread` they run only beat's
periodic jobs; supervisord.ini cannot depend on a setting). If anything fails on a host,
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

The tasks are here; their steps are in deploy/fabric_steps.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from fabric import task
from invoke.exceptions import Exit

from deploy.fabric_steps import (
    DeployError,
    build_wheels,
    current_release,
    deploy_hosts,
    deploy_root,
    deploy_run,
    go_to,
    install,
    installed_releases,
    make_tarball,
    migrate,
    q,
    remote,
    undo,
)


@task(help={"wheels": "also pack wheels of every requirement, so hosts install without the package index"})
def build(c: Any, wheels: bool = False) -> None:
    """Make a versioned tarball of what runs, under dist/ (or BUILD_DIR)."""
    print(make_tarball(build_wheels() if wheels else None))


@task(hosts=deploy_hosts())
def deploy(c: Any) -> None:
    """Install the newest build on this host, migrate (first host only), switch, restart one process at a time
    (the API, then the job workers and beat)."""
    c = remote(c)
    run = deploy_run()
    root, release = deploy_root(), run.release
    print(f"{c.host}: deploying {run.tarball.name} as {release}")
    previous = current_release(c)
    try:
        try:
            install(c, run.tarball, release)
        except BaseException:
            c.run(f"rm -rf {q(f'{root}/releases/{release}')} {q(f'{root}/releases/{release}.tar.gz')}", warn=True)
            raise
        if not run.migrated:
            migrate(c, release)
            run.migrated = True
        run.switched.append((c, previous))
        go_to(c, release)
    except BaseException as exc:
        print(f"{c.host}: deploy failed: {exc}", file=sys.stderr)
        stuck = undo(run)
        after = f"not rolled back: {', '.join(stuck)}" if stuck else "every host runs what it ran before"
        raise Exit(f"deploy of {release} failed on {c.host}; {after}", code=1) from None
    keep = max(int(os.environ.get("DEPLOY_KEEP", "5")), 2)
    for old in installed_releases(c)[:-keep]:
        c.run(f"rm -rf {q(f'{root}/releases/{old}')}")
    print(f"{c.host}: deployed {release}")


@task(hosts=deploy_hosts())
def rollback(c: Any, release: str = "") -> None:
    """Switch `current` to the previous release, or to --release NAME, and restart one process at a time."""
    c = remote(c)
    releases, current = installed_releases(c), current_release(c)
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
        go_to(c, target)
    except DeployError as exc:
        raise Exit(f"{c.host}: rolled back {current} -> {target}, but {exc}", code=1) from None
    print(f"{c.host}: rolled back {current} -> {target}")


@task(hosts=deploy_hosts())
def releases(c: Any) -> None:
    """List the releases on each host; `*` marks the current one."""
    c = remote(c)
    current = current_release(c)
    for name in installed_releases(c):
        print(f"{c.host}: {'*' if name == current else ' '} {name}")
