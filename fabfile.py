"""Build and release with Fabric 3: `fab build`, `fab deploy`, `fab rollback`, `fab releases`, `fab learn-host-keys`.

Hosts: `fab -H web1,app@web2:2222 deploy`, or DEPLOY_HOSTS=web1,web2 in the environment (-H wins); an SSH key
with `-i KEY`, ssh-agent or ~/.ssh/config. No password is read or kept here. A host's key must be in
DEPLOY_KNOWN_HOSTS: `fab learn-host-keys` records it after you compared its fingerprint. Settings, from the
environment:

    DEPLOY_HOSTS            comma-separated hosts, [user@]host[:port]
    DEPLOY_USER             SSH user for hosts (-H or DEPLOY_HOSTS) that name none (default: yours, or ~/.ssh/config's)
    DEPLOY_ROOT             where releases live on each host (default /srv/flask-restx-starter)
    DEPLOY_KEEP             releases, virtual environments and local builds kept (default 5, at least 2)
    DEPLOY_PYTHON           interpreter that makes the hosts' virtual environments (default python3; 3.11+)
    DEPLOY_HEALTH_TIMEOUT   seconds a restarted process has to answer 200 on /api/health (default 30)
    DEPLOY_CONNECT_TIMEOUT  seconds to reach a host: connect, SSH banner, login (default 10; -t wins)
    DEPLOY_KNOWN_HOSTS      the known_hosts file host keys are checked against (default ~/.ssh/known_hosts)
    DEPLOY_MIN_FREE_MB      free space a host needs under DEPLOY_ROOT (default 1024)
    DEPLOY_COMMAND_TIMEOUT  seconds any one remote command may take (default 900)
    BUILD_DIR               where builds are written and taken from (default dist/)

`fab deploy` and `fab rollback` hold each host's deploy lock (<root>/.fab.lock) for the whole run, and put the
hosts back on Ctrl-C, SIGTERM or SIGHUP as on any failure. `fab deploy` deploys HEAD: it takes the newest build
of the commit checked out, or builds one; uncommitted changes in what a build packs need --dirty (and the
release says so). Then, across every host before changing any: reach
each one (every failure named, within DEPLOY_CONNECT_TIMEOUT), check its Python, free space and settings file;
install the release on each (an unpacked build in releases/<time>, the same name everywhere, its virtual
environment), load each host's settings with it and compare their SECRET_KEY fingerprints, migrate once. Only
then switch the hosts one at a time, restarting their processes one at a time behind health checks (each API
process must serve the new release; the Celery workers answer a ping; beat runs). A failure before the switch
removes the release from every host; a failure after it puts every switched host back on its release and removes
the new one. When every host serves it, the release is marked good on each, and older releases, unused virtual
environments and local builds beyond DEPLOY_KEEP are removed. `fab rollback` goes only to releases marked good
on every host. Migrations must keep the previous release working (add first, drop a release later): a rollback
does not downgrade the database. docs/operations.md has the layout on the hosts and more.

The tasks are here; their steps are in deploy/ (build.py, hosts.py, fleet.py, fabric_steps.py).
"""

from __future__ import annotations

from typing import Any

from fabric import task

from deploy import fleet
from deploy.build import build_wheels, make_tarball
from deploy.fabric_steps import describe
from deploy.hosts import deploy_hosts, open_all, record_host_key


@task(help={"wheels": "also pack wheels of every requirement, so hosts install without the package index",
            "dirty": "build even with uncommitted changes in what a build packs (the release says dirty)"})
def build(c: Any, wheels: bool = False, dirty: bool = False) -> None:
    """Make a tarball of what runs, stamped with the commit, under dist/ (or BUILD_DIR)."""
    print(make_tarball(build_wheels() if wheels else None, dirty=dirty))


@task(hosts=deploy_hosts(), help={"dirty": "deploy uncommitted changes (a new build, which says dirty)"})
def deploy(c: Any, dirty: bool = False) -> None:
    """Deploy HEAD to every host: check all, install on all, migrate once, switch one host at a time."""
    if fleet.once("deploy"):
        fleet.deploy(c.config, dirty)


@task(hosts=deploy_hosts(), help={"release": "the release to go to (default: the newest good one before current)"})
def rollback(c: Any, release: str = "") -> None:
    """Switch every host to the previous good release, or to --release NAME, one process at a time."""
    if fleet.once("rollback"):
        fleet.rollback(c.config, release)


@task(hosts=deploy_hosts())
def releases(c: Any) -> None:
    """List each host's releases (`*` current; commit, build time, good) and the release each process runs."""
    if fleet.once("releases"):
        for host in open_all(c.config):
            for line in describe(host):
                print(f"{host.host}: {line}")


@task(name="learn-host-keys", hosts=deploy_hosts())
def learn_host_keys(c: Any) -> None:
    """Record each host's SSH key in DEPLOY_KNOWN_HOSTS: compare the fingerprints printed with the servers' own
    (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on each) before you deploy."""
    if fleet.once("learn-host-keys"):
        for host in open_all(c.config, learn=True):
            print(f"{host.host}: {record_host_key(host)}")
