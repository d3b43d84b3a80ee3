"""fab deploy and rollback across every host: all are checked before any changes, all end on one release.

Fabric calls a task once per host; the first call does the work for all of them (`once`), so that no host is
switched before every host has been reached, checked and given the release, and a failure anywhere puts every
host back.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from fabric import Config, Connection
from invoke.exceptions import Exit

from deploy import fabric_steps as steps
from deploy.build import TIME_FORMAT, build_for_head, prune_builds, stamp_of
from deploy.hosts import facts, keep_count, open_all, problems_of

_done: set[str] = set()


def once(task: str) -> bool:
    """True at a task's first call in this `fab` run, False at the calls Fabric makes for the other hosts."""
    first = task not in _done
    _done.add(task)
    return first


def _fail(message: str, problems: list[str]) -> Exit:
    return Exit(f"{message}:\n  " + "\n  ".join(problems), code=1)


def deploy(config: Config, dirty: bool) -> None:
    hosts = open_all(config)
    tarball = build_for_head(dirty)
    stamp = stamp_of(tarball)
    release = datetime.now(UTC).strftime(TIME_FORMAT)
    commit = f"{(stamp.get('commit') or 'unknown')[:12]}{' (dirty)' if stamp.get('dirty') else ''}"
    print(f"deploying {tarball.name} (commit {commit}) as {release} to {', '.join(h.host for h in hosts)}")

    problems = [p for h in hosts for p in problems_of(h, facts(h), stamp.get("wheels_python"))]
    if problems:
        raise _fail("not deployed; nothing was changed", problems)
    previous = {h.host: steps.current_release(h) for h in hosts}
    _install_everywhere(hosts, tarball, release)
    switched: list[Connection] = []
    try:
        for host in hosts:
            switched.append(host)
            steps.go_to(host, release)
    except BaseException as exc:
        print(f"{switched[-1].host}: deploy failed: {exc}", file=sys.stderr)
        stuck = _put_back(switched, previous)
        for host in hosts:
            steps.remove_release(host, release)
        after = f"NOT put back: {', '.join(stuck)}" if stuck else "every host runs what it ran before"
        raise Exit(f"deploy of {release} failed on {switched[-1].host}; {after}", code=1) from None

    for host in hosts:
        steps.mark_good(host, release)
    _prune(hosts, tarball)
    print(f"deployed {release} (commit {commit}) to every host")


def _prune(hosts: list[Connection], tarball: Path) -> None:
    """Remove what DEPLOY_KEEP does not keep; the release is deployed whatever happens here, so a failure is a
    warning."""
    keep = keep_count()
    for host in hosts:
        try:
            for removed in steps.prune(host, keep):
                print(f"{host.host}: removed {removed}")
        except Exception as exc:
            print(f"{host.host}: WARNING: could not remove old releases: {exc}", file=sys.stderr)
    for old in prune_builds(keep, tarball):
        print(f"removed build {old.name}")


def _install_everywhere(hosts: list[Connection], tarball: Path, release: str) -> None:
    """Install ``release`` on every host, check their settings agree, migrate once; on any failure remove it from
    every host and exit (no host has been switched yet)."""
    where = hosts[0].host
    try:
        fingerprints = {}
        for host in hosts:
            where = host.host
            print(f"{where}: installing")
            steps.install(host, tarball, release)
            fingerprints[where] = steps.settings_fingerprint(host, release)
        where = hosts[0].host
        if len(set(fingerprints.values())) > 1:
            raise steps.DeployError(
                "SECRET_KEY differs between hosts (codes, tickets and sessions made on one would fail on another): "
                + ", ".join(f"{host} {print_}" for host, print_ in fingerprints.items()))
        steps.migrate(hosts[0], release)
    except BaseException as exc:
        for host in hosts:
            steps.remove_release(host, release)
        raise Exit(f"deploy of {release} failed on {where} before any host was switched: {exc}; the release was "
                   f"removed from every host", code=1) from None


def _put_back(switched: list[Connection], previous: dict[str, str]) -> list[str]:
    """Put every switched host back on the release it ran (newest first); a host without one stops serving, as
    before. The hosts that could not be put back."""
    stuck = []
    for host in reversed(switched):
        try:
            if previous[host.host]:
                print(f"{host.host}: rolling back to {previous[host.host]}")
                steps.go_to(host, previous[host.host])
            else:
                print(f"{host.host}: stopping (it had no release before)")
                steps.stop_all(host)
        except Exception as exc:  # keep undoing the other hosts; this one needs a person
            print(f"{host.host}: NOT PUT BACK, see to this host by hand: {exc}", file=sys.stderr)
            stuck.append(host.host)
    return stuck


def rollback(config: Config, release: str) -> None:
    """Every host to ``release`` (restarted onto it also where it is current), or to the newest release older than
    each host's current one that was found good on every host; if one host fails, every host goes back to what it
    ran."""
    hosts = open_all(config)
    current = {h.host: steps.current_release(h) for h in hosts}
    good = [set(steps.installed_releases(h, steps.GOOD)) for h in hosts]
    everywhere = set.intersection(*good)
    if release:
        if release not in everywhere:
            lacking = [h.host for h, mine in zip(hosts, good, strict=True) if release not in mine]
            raise Exit(f"{release} is not a good release on {', '.join(lacking)} (fab releases lists them); "
                       f"nothing was changed", code=1)
        target = release
    else:
        oldest = min((c for c in current.values() if c), default="")
        older = sorted(r for r in everywhere if r < oldest)
        if not older:
            raise Exit(f"no release older than {oldest or '(none current)'} is good on every host; nothing was "
                       f"changed", code=1)
        target = older[-1]
    switched: list[Connection] = []
    try:
        for host in hosts:
            if release or current[host.host] != target:  # a named release is restarted onto even where current
                switched.append(host)
                steps.go_to(host, target)
                print(f"{host.host}: rolled back {current[host.host]} -> {target}")
    except BaseException as exc:
        print(f"{switched[-1].host}: rollback failed: {exc}", file=sys.stderr)
        stuck = _put_back(switched, current)
        after = f"NOT put back: {', '.join(stuck)}" if stuck else "every host runs what it ran before"
        raise Exit(f"rollback to {target} failed on {switched[-1].host}; {after}", code=1) from None
    print(f"every host runs {target}")
