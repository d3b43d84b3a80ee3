"""fab build/deploy/rollback/releases against two real sshd hosts (deploy_lab.py), supervisor on each, and nginx in
front of one of them while a load generator runs through it.

The hosts are shared by the tests of this module (making them costs the first deploy its virtual environments);
each test deploys the builds it needs first, so none relies on another having run.
"""

from __future__ import annotations

import configparser
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from deploy_lab import CONNECT_TIMEOUT, DeployLab, Host

from tests.fixtures.accounts import PASSWORD
from tests.support import PROJECT_DIR, SECRET, commit, service_missing, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.deploy, pytest.mark.timeout(420)]
PORTS = (5000, 5001)
# Fails at start on a host whose shared/instance holds a file named "broken" (the test makes one on one host):
# before the app is imported, so the process is gone within supervisor's startsecs even on a busy machine.
BREAK_ON_MARKED_HOSTS = (
    "tornado_server.py", "from app.server.lifecycle import",
    'if os.path.exists("instance/broken"):\n    sys.exit("this release is broken on purpose")\n'
    "from app.server.lifecycle import")
# `manage.py db upgrade` fails (and nothing else does: the app imports and its settings load).
BREAK_THE_MIGRATION = ("migrations/env.py", "if context.is_offline_mode():",
                       "raise SystemExit('this migration is broken on purpose')\nif context.is_offline_mode():")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[DeployLab]:
    """The hosts, with a first release on both: its deploy made their virtual environments, from the wheels in
    the build (the hosts have no package index)."""
    lab = DeployLab(tmp_path_factory.mktemp("deploy"))
    try:
        lab.start()
        lab.first_deploy = deployed(lab, "first", wheels=True)[1]
        yield lab
    finally:
        lab.stop()


def git_head(source) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def deployed(lab: DeployLab, name: str, hosts: list[Host] | None = None, wheels: bool = False,
             patch: tuple[str, str, str] | None = None) -> tuple[str, subprocess.CompletedProcess]:
    """Build a source at version ``name`` and deploy it; (the version it reports, fab's output)."""
    source = lab.source(name, name, patch)
    lab.fab(source, "build", *(["--wheels"] if wheels else []))
    return f"{name}+", lab.fab(source, "deploy", hosts=hosts)


def serving(lab: DeployLab, version: str, hosts: list[Host] | None = None) -> bool:
    return all(lab.version(h, port).startswith(version) for h in hosts or lab.hosts for port in PORTS)


def workers_back(host: Host, out: str, after: str) -> None:
    """fab restarted ``host``'s job worker after the API, its own worker answered a ping, and beat runs."""
    answering = f"{host.address}: worker:worker-0 answering: worker-0@{host.name}: pong"
    assert out.index(after) < out.index(answering) < out.index(f"{host.address}: beat running"), out


def health(host: Host, port: int = 5000) -> dict:
    body = host.get("/api/health", port)
    assert body.startswith("{"), body
    return json.loads(body)["data"]


def test_the_first_deploy_installs_one_release_everywhere_and_migrates_once(lab):
    assert lab.first_deploy.stdout.count("migrating the database") == 1  # the hosts share it
    for host in lab.hosts:  # supervisord started: the API, then its worker answering, then beat
        workers_back(host, lab.first_deploy.stdout, after=f"{host.address}: api:api-1 healthy")
    names = {h.address: h.current() for h in lab.hosts}
    first = names[lab.hosts[0].address]
    assert set(names.values()) == {first}  # one release name for the whole run
    head = git_head(lab.tmp / "src-first")
    for host in lab.hosts:
        assert first in host.releases()
        release = host.disk / "releases" / first
        assert (release / ".good").exists()  # every host served it
        assert os.readlink(release / "config_override.py") == f"{lab.root}/shared/config_override.py"
        assert os.readlink(release / "instance") == f"{lab.root}/shared/instance"
        assert not (release / "wheels").exists() and not (release / "tests").exists()
        assert len(list((host.disk / "venvs").iterdir())) == 1
        for port in PORTS:  # what each process runs: the commit it was built from, the release it started in
            assert health(host, port)["build"] | {"built_at": None} == {
                "commit": head, "dirty": False, "built_at": None, "release": first}


def seed_old_things(lab: DeployLab, source) -> None:
    """What earlier deploys leave: two old good releases, an unfinished one, a venv none uses; old builds."""
    for host in lab.hosts:
        for name in ("19990101T000000.000000", "19990102T000000.000000"):
            (host.disk / "releases" / name).mkdir()
            (host.disk / "releases" / name / ".complete").touch()
            (host.disk / "releases" / name / ".good").touch()
        (host.disk / "releases" / "19990103T000000.000000").mkdir()  # a run cut off while installing
        (host.disk / "releases" / "19990104T000000.000000").mkdir()  # installed, never found good
        (host.disk / "releases" / "19990104T000000.000000" / ".complete").touch()
        (host.disk / "venvs" / "0123456789abcdef").mkdir()
        subprocess.run(["chown", "-R", f"{lab.user}:{lab.user}", str(host.disk / "releases"), str(host.disk / "venvs")],
                       check=True, timeout=30)  # the deploy user's, as on a host
    builds = lab.build_dir / source.name
    builds.mkdir(parents=True, exist_ok=True)
    for n in range(3):
        old = builds / f"flask-restx-starter-0.0.{n}-19990101T00000{n}.000000-000000000000.tar.gz"
        old.write_bytes(b"")
        os.utime(old, (946684800 + n, 946684800 + n))


def test_deploy_to_every_host_then_roll_back(lab):
    before = [h.current() for h in lab.hosts]
    assert before[0] == before[1]
    source = lab.source("two", "two")
    lab.fab(source, "build")
    (source / "app" / "HEAD").write_text("a later commit\n")
    head = commit(source, "a later commit: fab deploy must take it, not the newest build")
    seed_old_things(lab, source)
    result = lab.fab(source, "deploy", env={"DEPLOY_KEEP": "2"})
    v2 = "two+"
    assert serving(lab, v2)
    out = result.stdout
    assert f"-{head[:12]}.tar.gz (commit {head[:12]})" in out  # a new build of HEAD
    assert out.count("migrating the database") == 1
    release2 = lab.hosts[0].current()
    for host in lab.hosts:  # one process at a time, each healthy before the next restarts
        assert out.index(f"{host.address}: api:api-0 healthy") < out.index(f"{host.address}: api:api-1 healthy")
        workers_back(host, out, after=f"{host.address}: api:api-1 healthy")
        assert len(list((host.disk / "venvs").iterdir())) == 1  # requirements unchanged: venv reused
        assert health(host)["build"]["commit"] == head
        # DEPLOY_KEEP=2: the two newest releases stay, the rest and the unused venv are gone
        assert sorted(p.name for p in (host.disk / "releases").iterdir()) == sorted([before[0], release2])
    assert release2 > before[0] and all(h.current() == release2 for h in lab.hosts)
    assert len(list((lab.build_dir / source.name).glob("*.tar.gz"))) == 2  # builds too

    listing = lab.fab(source, "releases").stdout
    for host in lab.hosts:
        assert f"{host.address}: * {release2}  {head[:12]}" in listing and f"{host.address}:   {before[0]}" in listing
        for process in ("api:api-0", "api:api-1", "worker:worker-0", "beat"):
            assert f"{host.address}:   runs {process}: {release2}" in listing, listing

    # A migration that fails: the deploy stops before any switch and leaves nothing of the release anywhere
    broken = lab.source("badmigration", "badmigration", BREAK_THE_MIGRATION)
    failed = lab.fab(broken, "deploy", check=False)
    assert failed.returncode == 1 and "before any host was switched" in failed.stderr, failed.stdout + failed.stderr
    assert "this migration is broken on purpose" in failed.stderr
    for host in lab.hosts:
        assert host.current() == release2 and serving(lab, v2, [host])
        assert sorted(p.name for p in (host.disk / "releases").iterdir()) == sorted([before[0], release2])

    back = lab.fab(source, "rollback").stdout  # to the newest good release before current, never the broken one
    assert all(h.current() == before[0] for h in lab.hosts)
    for host in lab.hosts:
        workers_back(host, back, after=f"{host.address}: api:api-1 healthy")
    assert not serving(lab, v2)
    first = lab.hosts[0]
    lab.fab(source, "rollback", "--release", release2, hosts=[first])  # a named release, on one host
    assert first.current() == release2 and serving(lab, v2, [first])
    assert lab.hosts[1].current() == before[0]

    missing = lab.fab(source, "rollback", "--release", "19990101T000000.000000", hosts=[first], check=False)
    assert missing.returncode == 1 and "19990101T000000.000000 is not a good release on " in missing.stderr
    assert serving(lab, v2, [first])


def test_what_stops_a_deploy_before_it_changes_any_host(lab):
    """Every host is checked before any changes: each refusal names the host, is quick, and changes nothing."""
    first, second = lab.hosts
    before = {h.address: (h.current(), h.releases()) for h in lab.hosts}
    source = lab.source("refused", "refused")

    def refused(*, expect: str, seconds: float = 20, **kwargs) -> str:
        started = time.monotonic()
        result = lab.fab(source, "deploy", check=False, **kwargs)
        took = time.monotonic() - started
        said = result.stdout + result.stderr
        assert result.returncode == 1 and expect in result.stderr, said
        assert took < seconds, f"{took:.1f} s: {said}"
        for host in lab.hosts:
            assert (host.current(), host.releases()) == before[host.address]
        return said

    # A host that refuses SSH (nothing listens on that port) and one that never answers (its packets vanish)
    refused(targets=f"{lab.user}@{first.address},{lab.user}@{second.address}:2222",
            expect=f"{second.address}:2222: refuses connections")
    subprocess.run(["ip", "neigh", "replace", second.address, "lladdr", "02:00:00:00:00:01", "nud", "permanent",
                    "dev", second.link], check=True, timeout=10)
    try:
        refused(expect=f"{second.address}:22: no answer within {CONNECT_TIMEOUT} s", seconds=CONNECT_TIMEOUT + 10)
    finally:
        subprocess.run(["ip", "neigh", "del", second.address, "dev", second.link], check=True, timeout=10)
    # A host whose key nobody recorded
    refused(env={"DEPLOY_KNOWN_HOSTS": str(lab.tmp / "nobody_known_hosts")},
            expect=f"{first.address}:22: its host key is not in ")
    # A host whose recorded key is also marked @revoked, as OpenSSH reads it
    known = lab.known_hosts.read_text()
    key = next(line.split()[1:3] for line in known.splitlines() if line.startswith(f"{second.address} "))
    revoked = lab.tmp / "revoked_known_hosts"
    revoked.write_text(f"{known}@revoked * {' '.join(key)}\n")
    refused(env={"DEPLOY_KNOWN_HOSTS": str(revoked)}, expect=f"{second.address}:22: its host key is not in ")
    # Settings others can read; then a SECRET_KEY that differs (found once the release is installed: removed again)
    settings = second.disk / "shared" / "config_override.py"
    original = settings.read_text()
    settings.chmod(0o644)
    try:
        refused(expect=f"{second.address}: {lab.root}/shared/config_override.py (mode 644) can be read by other")
    finally:
        settings.chmod(0o600)
    settings.write_text(original.replace(SECRET, "another-secret-" + "y" * 40))
    try:
        said = refused(expect="SECRET_KEY differs between hosts", seconds=60)
    finally:
        settings.write_text(original)
    assert "before any host was switched" in said and SECRET not in said
    # Another run holds a host's deploy lock
    lock = os.open(second.disk / ".fab.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.fchown(lock, pwd.getpwnam(lab.user).pw_uid, pwd.getpwnam(lab.user).pw_gid)
        fcntl.flock(lock, fcntl.LOCK_EX)
        refused(expect=f"{second.address}: another fab deploy or rollback is running there")
    finally:
        os.close(lock)
    # Uncommitted changes: only with --dirty
    (source / "app" / "version.py").write_text((source / "app" / "version.py").read_text() + "# an edit\n")
    refused(expect="uncommitted changes in what a build packs: commit first, or build anyway with --dirty")


def fab_in_background(lab: DeployLab, source) -> tuple[subprocess.Popen, list[str]]:
    """`fab deploy` running, and the lines of its output as they come."""
    command = lab.fab_command("-H", ",".join(f"{lab.user}@{h.address}" for h in lab.hosts), "deploy")
    process = subprocess.Popen(command, cwd=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**lab.fab_env(source), "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return process, lines


def test_a_deploy_cut_off_or_a_host_gone_silent_leaves_every_host_on_what_it_ran(lab):
    first, second = lab.hosts
    before = {h.address: (h.current(), lab.version(h)) for h in lab.hosts}

    # SIGTERM (a cancelled CI job) while the first host is switched: both go back, the release is removed
    process, lines = fab_in_background(lab, lab.source("cutoff", "cutoff"))
    wait_until(lambda: any(f"{first.address}: api:api-0 healthy" in line for line in lines), timeout=120)
    process.send_signal(signal.SIGTERM)
    assert process.wait(120) == 1
    out = "".join(lines)
    assert "cancelled by SIGTERM" in out and "every host runs what it ran before" in out, out
    release = re.search(r"deploying \S+ \(commit \w+\) as (\S+)", out)[1]
    for host in lab.hosts:
        current, version = before[host.address]
        assert host.current() == current and serving(lab, version, [host])
        assert not (host.disk / "releases" / release).exists()

    # The first host stops answering while it migrates: fab ends within about 30 s of the silence, naming it
    slow = ("migrations/env.py", "if context.is_offline_mode():",
            "import time\ntime.sleep(40)\nraise SystemExit('too late')\nif context.is_offline_mode():")
    process, lines = fab_in_background(lab, lab.source("silent", "silent", slow))
    wait_until(lambda: any("migrating the database" in line for line in lines), timeout=120)
    subprocess.run(["ip", "neigh", "replace", first.address, "lladdr", "02:00:00:00:00:01", "nud", "permanent",
                    "dev", first.link], check=True, timeout=10)
    silenced = time.monotonic()
    try:
        assert process.wait(60) == 1
        took = time.monotonic() - silenced
    finally:
        subprocess.run(["ip", "neigh", "del", first.address, "dev", first.link], check=True, timeout=10)
    out = "".join(lines)
    assert f"failed on {first.address} before any host was switched" in out, out
    assert f"could not be removed from {first.address}" in out, out
    assert took < 45, f"{took:.0f} s after the silence"
    for host in lab.hosts:
        current, version = before[host.address]
        assert host.current() == current and serving(lab, version, [host])
    release = re.search(r"deploying \S+ \(commit \w+\) as (\S+)", out)[1]
    assert not (second.disk / "releases" / release).exists()
    print(f"fab ended {took:.1f} s after the first host went silent")


def test_a_release_that_fails_its_health_check_is_rolled_back_on_every_host(lab):
    before = {h.address: (h.current(), lab.version(h)) for h in lab.hosts}
    first, second = lab.hosts
    (second.disk / "shared" / "instance" / "broken").touch()  # the first host takes it; the second fails
    try:
        source = lab.source("bad", "bad", BREAK_ON_MARKED_HOSTS)
        result = lab.fab(source, "deploy", check=False)
    finally:
        (second.disk / "shared" / "instance" / "broken").unlink()

    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    bad = re.search(r"deploying \S+ \(commit \w+\) as (\S+)", result.stdout)[1]
    assert f"{first.address}: api:api-1 healthy on port 5001: " in out  # the first host took it
    assert f"failed on {second.address}" in result.stderr, out
    # Crashing at start, the process is either caught between supervisor's restarts or found with a pid that
    # dies before it answers: both are a failed start of api-0.
    assert re.search(r"api:api-0 (is not running|\(port 5000\) failed its health check)", result.stderr), out
    assert f"{first.address}: rolling back to {before[first.address][0]}" in result.stdout, out
    for host in lab.hosts:
        current, version = before[host.address]
        assert host.current() == current
        assert bad not in host.releases() and not (host.disk / "releases" / bad).exists()  # removed
        assert serving(lab, version, [host])


@pytest.fixture
def nginx(lab) -> Iterator[str]:
    """nginx with deploy/nginx.conf, in the first host's network; its URL from outside."""
    binary = "/usr/sbin/nginx"
    if not os.path.exists(binary):
        service_missing("nginx", FileNotFoundError(f"{binary} (.ci/run installs it)"))
    host, work = lab.hosts[0], lab.tmp / "nginx"
    work.mkdir(exist_ok=True)
    site = (PROJECT_DIR / "deploy" / "nginx.conf").read_text()
    assert "listen [::]:80;" in site
    (work / "site.conf").write_text(site.replace("listen [::]:80;", ""))  # no IPv6 inside the test's network
    (work / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n  access_log {work}/access.log;\n  client_body_temp_path {work}/body;\n"
        f"  proxy_temp_path {work}/proxy;\n  include {work}/site.conf;\n}}\n")
    process = subprocess.Popen(["ip", "netns", "exec", host.name, binary, "-c", str(work / "nginx.conf"),
                                "-g", "daemon off;"])
    url = f"http://{host.address}"

    def listening() -> bool:
        assert process.poll() is None, (work / "error.log").read_text()
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex((host.address, 80)) == 0

    try:
        wait_until(listening, timeout=20)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def test_a_deploy_under_load_behind_nginx_fails_no_request(lab, nginx):
    first = lab.hosts[0]
    phone = "+8613800138011"
    subprocess.run(
        [sys.executable, "manage.py", "create-admin", "--phone", phone, "--nickname", "load",
         "--password", PASSWORD], cwd=PROJECT_DIR, check=True, capture_output=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "production", "APP_SMS__GATEWAY": "file",
             "SECRET_KEY": SECRET, "DATABASE_URL": f"sqlite:///{lab.database}",
             "REDIS_URL": f"unix://{lab.redis_socket}", "APP_APP__PUBLIC_URL": lab.public_url})
    login = requests.post(f"{nginx}/api/auth/login", json={"account": phone, "password": PASSWORD}, timeout=10)
    assert login.status_code == 200, login.text
    token = login.json()["data"]["token"]

    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    me = session.get(f"{nginx}/api/users/me", headers={"token": token}, timeout=10)
                    health = session.get(f"{nginx}/api/health", timeout=10)
                except requests.RequestException as exc:
                    outcomes[type(exc).__name__] += 1
                    continue
                outcomes[f"{me.status_code} {health.status_code}"] += 1
                if health.status_code == 200:
                    versions[health.json()["data"]["version"].split("+")[0]] += 1  # "after" once deployed

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: outcomes["200 200"] >= 20, timeout=20)
        after, result = deployed(lab, "after", hosts=[first])
        wait_until(lambda: versions["after"] >= 20, timeout=20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    print(f"through nginx during the deploy: {dict(outcomes)}, versions {dict(versions)}")
    assert "api:api-1 healthy" in result.stdout
    assert set(outcomes) == {"200 200"}, outcomes  # not one failed request
    assert outcomes["200 200"] >= 200 and len(versions) >= 2
    assert serving(lab, after, [first])
    log = (lab.tmp / "nginx" / "access.log").read_text()
    assert log.count('" 200 ') >= 2 * outcomes["200 200"]
    # trusted_proxies = 1: the app logs the client's address from X-Forwarded-For, not nginx's 127.0.0.1
    client = first.address.rsplit(".", 1)[0] + ".1"
    app_logs = "".join(p.read_text() for p in (first.disk / "shared" / "instance" / "logs").glob("api-*.log"))
    assert "GET /api/users/me 200" in app_logs and f"ip={client}" in app_logs
    assert "ip=127.0.0.1" not in app_logs.split("GET /api/users/me 200", 1)[1].split("\n", 1)[0]
    assert not any(t.is_alive() for t in threads)


# ------------------------------------------------------------------------------------------ the systemd unit

UNIT = PROJECT_DIR / "deploy" / "flask-restx-starter.service"
UNIT_ROOT = "/srv/flask-restx-starter"  # the deploy root the unit's paths name


def ini(text: str) -> dict[str, dict[str, str]]:
    """The sections of an ini-like file (a systemd unit, supervisord.ini), names as written, no interpolation."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {name: dict(parser[name]) for name in parser.sections()}


def test_the_systemd_unit_starts_at_boot_as_a_user_and_gives_supervisord_time_to_stop_its_programs():
    unit = ini(UNIT.read_text())
    service = unit["Service"]
    assert service["User"] not in ("", "root") and service["Group"] not in ("", "root")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert unit["Unit"]["Wants"] == unit["Unit"]["After"] == "network-online.target"
    assert service["Restart"] == "on-failure"
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/supervisord") and "-n" in argv  # in the foreground: systemd watches it
    release = service["WorkingDirectory"]
    assert release == f"{UNIT_ROOT}/current" and argv[argv.index("-c") + 1] == f"{release}/supervisord.ini"
    assert unit["Unit"]["ConditionPathExists"] == f"{release}/supervisord.ini"  # no fail-loop before a deploy
    # Only supervisord gets SIGTERM, and it stops its groups one after another, each up to its stopwaitsecs.
    assert service["KillMode"] == "mixed"
    programs = [v for k, v in ini((PROJECT_DIR / "supervisord.ini").read_text()).items() if k.startswith("program:")]
    stopping = sum(int(program.get("stopwaitsecs", "10")) for program in programs)
    assert stopping >= 60 and int(service["TimeoutStopSec"]) > stopping
    # The one command fab runs with sudo is what deploy/sudoers allows the unit's user.
    assert "sudo -n systemctl start {UNIT}" in (PROJECT_DIR / "deploy" / "service.py").read_text()
    rule = [line for line in (PROJECT_DIR / "deploy" / "sudoers").read_text().splitlines() if line[:1] not in "#"]
    assert len(rule) == 1 and rule[0].startswith(f"{service['User']} ALL=(root) NOPASSWD: ")
    allowed = {command.strip() for command in rule[0].split("NOPASSWD:", 1)[1].split(",")}
    assert f"/usr/bin/systemctl start {UNIT.stem}" in allowed and all(
        command.startswith("/usr/bin/systemctl ") and command.endswith(f" {UNIT.stem}") for command in allowed)


def stop_supervisord(host: Host) -> None:
    """Stop supervisord and its programs, as a shutdown does: SIGTERM, then wait until it is gone."""
    pid = host.supervisord_pid()
    assert pid, "supervisord runs on the host"
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=120)


def test_after_a_reboot_the_unit_brings_the_api_back(lab):
    """Everything stopped as at a shutdown, then exactly the unit's command as its User in its WorkingDirectory,
    inside the host (this lab's deploy root for the unit's, its deploy user for the unit's User): both API
    processes answer. Then fab, finding no supervisord and no unit here, starts it again, with its warning."""
    host = lab.hosts[-1]
    service = ini(UNIT.read_text())["Service"]
    before = lab.version(host)
    stop_supervisord(host)
    assert all(host.get("/api/health", port).startswith("ERROR") for port in PORTS)
    with socket.socket(socket.AF_UNIX) as stale:  # what a power cut leaves: a control socket nothing listens on
        stale.bind(str(host.disk / "shared" / "instance" / "supervisor.sock"))

    def here(text: str) -> str:
        return text.replace(UNIT_ROOT, str(lab.root))

    assert host.sshd is not None
    with (lab.tmp / "unit.log").open("wb") as log:
        supervisord = subprocess.Popen(
            ["nsenter", "-t", str(host.sshd.pid), "-m", "-u", "-n", *lab.as_user(),  # each execs the next
             "env", f"--chdir={here(service['WorkingDirectory'])}", *shlex.split(here(service["ExecStart"]))],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: [lab.version(host, port) for port in PORTS] == [before] * len(PORTS), timeout=60)
        assert host.supervisord_pid() == supervisord.pid  # in the foreground: the unit's main process
        status = Path(f"/proc/{supervisord.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{pwd.getpwnam(lab.user).pw_uid}\s", status, re.M), status
    finally:
        supervisord.send_signal(signal.SIGTERM)  # what systemd sends it (KillMode=mixed: to it alone)
        supervisord.wait(int(service["TimeoutStopSec"]))
    assert supervisord.returncode == 0, (lab.tmp / "unit.log").read_text()
    assert all(host.get("/api/health", port).startswith("ERROR") for port in PORTS)  # it stopped its programs

    back = lab.fab(lab.tmp / "src-first", "rollback", "--release", host.current(), hosts=[host])
    assert "will not come back after a reboot" in back.stderr
    workers_back(host, back.stdout, after=f"{host.address}: api:api-1 healthy")
    assert lab.version(host) == before


def test_the_deploy_user_may_start_stop_and_restart_the_unit_with_sudo_and_nothing_else(lab):
    """deploy/sudoers, installed in a host for its deploy user, lets fab's `sudo -n systemctl start …` through
    without a password (`sudo -l` names the command it would run; systemd itself does not run here)."""
    if shutil.which("visudo") is None:
        service_missing("sudo", FileNotFoundError("visudo (.ci/run installs sudo)"))
    check = subprocess.run(["visudo", "-cf", str(PROJECT_DIR / "deploy" / "sudoers")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    host = lab.hosts[0]
    for action in ("start", "stop", "restart"):
        allowed = lab.in_host(host, "sudo", "-n", "-l", "systemctl", action, UNIT.stem)
        assert allowed.returncode == 0 and allowed.stdout.strip() == f"/usr/bin/systemctl {action} {UNIT.stem}", (
            allowed.stdout + allowed.stderr)
    for other in (("systemctl", "start", "ssh"), ("systemctl", "start", UNIT.stem, "ssh"), ("systemctl", "edit",
                  UNIT.stem), ("sh", "-c", "id")):
        refused = lab.in_host(host, "sudo", "-n", "-l", *other)
        assert refused.returncode == 1 and not refused.stdout.strip(), (other, refused.stdout, refused.stderr)


def test_fab_starts_supervisord_through_the_unit_where_it_is_installed(lab):
    """With the unit installed (a stand-in for systemd's systemctl in the host: `is-enabled` says enabled, `start`
    runs the unit's ExecStart as its User in its WorkingDirectory and returns at once, as systemd does), fab starts
    supervisord with `sudo -n systemctl start` through deploy/sudoers, waits for its socket, and restarts as ever."""
    if shutil.which("sudo") is None:
        service_missing("sudo", FileNotFoundError("sudo (.ci/run installs it)"))
    host = lab.hosts[0]
    assert host.sshd is not None
    service = ini(UNIT.read_text())["Service"]
    command = shlex.split(service["ExecStart"].replace(UNIT_ROOT, str(lab.root)))
    directory = service["WorkingDirectory"].replace(UNIT_ROOT, str(lab.root))
    systemctl = lab.common / "systemctl"
    systemctl.write_text(
        f'#!/bin/sh\ncase "$*" in\n"is-enabled {UNIT.stem}") echo enabled ;;\n'
        f'"start {UNIT.stem}") [ "$(id -u)" = 0 ] || exit 4\n'
        f"  setsid {shlex.join(lab.as_user())} env --chdir={shlex.quote(directory)} {shlex.join(command)} "
        f'>>{lab.common}/systemd.log 2>&1 </dev/null & ;;\n*) exit 1 ;;\nesac\n')
    systemctl.chmod(0o755)
    before = lab.version(host)
    stop_supervisord(host)
    namespace = ["nsenter", "-t", str(host.sshd.pid), "-m"]
    subprocess.run([*namespace, "mount", "--bind", str(systemctl), "/usr/bin/systemctl"], check=True)
    subprocess.run([*namespace, "mkdir", "-p", "/run/systemd/system"], check=True)  # what a host booted by systemd has
    try:
        back = lab.fab(lab.tmp / "src-first", "rollback", "--release", host.current(), hosts=[host])
    finally:
        subprocess.run([*namespace, "umount", "/usr/bin/systemctl"], check=True)
        subprocess.run([*namespace, "rm", "-r", "/run/systemd"], check=True)
    assert f"{host.address}: starting supervisord through systemd" in back.stdout
    assert "WARNING" not in back.stderr, back.stderr
    workers_back(host, back.stdout, after=f"{host.address}: api:api-1 healthy")
    assert lab.version(host) == before
    status = Path(f"/proc/{host.supervisord_pid()}/status").read_text()
    assert re.search(rf"^Uid:\s+{pwd.getpwnam(lab.user).pw_uid}\s", status, re.M), status
    arguments = Path(f"/proc/{host.supervisord_pid()}/cmdline").read_bytes().decode().split("\0")
    assert arguments[-5:-1] == command[-4:]  # the unit's: supervisord -n -c …/supervisord.ini
