"""fab deploy and rollback across every host: all are checked before any changes, all end on one release.

Fabric calls a task once per host; the first call does the work for all of them (`once`), so that no host is
switched before every host has been reached, checked and given the release, and a failure anywhere puts every
host back.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


class Cancelled(BaseException):
    """fab got SIGINT, SIGTERM or SIGHUP (Ctrl-C, a cancelled CI job, a closed terminal) in the middle of a run."""


def _cancel(number: int, frame: Any) -> None:
    raise Cancelled(f"cancelled by {signal.Signals(number).name}")


def _hold(number: int, frame: Any) -> None:
    print(f"fab: {signal.Signals(number).name} ignored while the hosts are being put back; wait", file=sys.stderr)


@contextmanager
def _signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Handle SIGINT, SIGTERM and SIGHUP with ``handler`` inside the block. Invoke swallows a KeyboardInterrupt
    while a remote command runs (it only forwards it), so cancelling raises Cancelled instead, which ends the wait
    and reaches the clean-up; while hosts are put back, signals are held off."""
    numbers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        for number, old in before.items():
            signal.signal(number, old)


def _fail(message: str, problems: list[str]) -> Exit:
    return Exit(f"{message}:\n  " + "\n  ".join(problems), code=1)


def deploy(config: Config, dirty: bool) -> None:
    with _signals(_cancel):
        _deploy(config, dirty)


def _deploy(config: Config, dirty: bool) -> None:
    hosts = open_all(config, lock=True)
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
        with _signals(_hold):
            stuck = _put_back(switched, previous)
            kept = [h.host for h in hosts if not steps.remove_release(h, release)]
        after = f"NOT put back: {', '.join(stuck)}" if stuck else "every host runs what it ran before"
        if kept:
            after += f"; {release} could not be removed from {', '.join(kept)} (the next deploy removes it)"
        raise Exit(f"deploy of {release} failed on {switched[-1].host}; {after}", code=1) from None

    with _signals(_hold):  # every host serves it: mark it so, whatever is sent now
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
        with _signals(_hold):
            kept = [h.host for h in hosts if not steps.remove_release(h, release)]
        removed = (f"it could not be removed from {', '.join(kept)} (the next deploy removes it)" if kept
                   else "the release was removed from every host")
        raise Exit(f"deploy of {release} failed on {where} before any host was switched: {exc}; {removed}",
                   code=1) from None


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
    with _signals(_cancel):
        _rollback(config, release)


def _rollback(config: Config, release: str) -> None:
    hosts = open_all(config, lock=True)
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
        with _signals(_hold):
            stuck = _put_back(switched, current)
        after = f"NOT put back: {', '.join(stuck)}" if stuck else "every host runs what it ran before"
        raise Exit(f"rollback to {target} failed on {switched[-1].host}; {after}", code=1) from None
    print(f"every host runs {target}")
