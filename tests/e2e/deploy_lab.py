"""Deploy targets for the fabfile tests: hosts with their own network and their own disk, reached over real SSH.

Each host is a network namespace (its own 10.200.x.2 address over a veth pair, its own loopback, so both run
supervisor on ports 5000/5001) with its own host name and an sshd started inside a mount namespace in which the host's directory is
bound over the common deploy root: fab sees the same DEPLOY_ROOT on every host, as on real servers, and each
writes only its own directory. The hosts share what real hosts share: one database (an SQLite file outside the
deploy root) and one Redis (a private redis-server on a unix socket, which crosses network namespaces).
fab connects as an unprivileged deploy user, as docs/operations.md prepares hosts: a system user the lab makes
(and removes), owning the hosts' disks, the database's directory and Redis (which runs as that user).
Everything here is started by the lab and stopped by it, by process id; the namespaces are deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support import PROJECT_DIR, SECRET, commit, copy_project, process_alive, service_missing, wait_until

FAB = str(Path(sys.executable).with_name("fab"))
# The interpreter that makes the hosts' virtual environments: the one this venv was made from.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
CONNECT_TIMEOUT = 3  # DEPLOY_CONNECT_TIMEOUT of the tests' fab runs
KNOWN_HOSTS_BEFORE = (
    "# kept by hand\n@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7Z1Q9h0d7w1kqf3Lw6FQv0C7v3mX2"
    "H1fW8nq2Jx9Zs\nold.example.com sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA==")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


@dataclass
class Host:
    name: str  # the network namespace
    address: str
    disk: Path  # what the host sees at the deploy root
    link: str  # the host's end of its network link, as seen from this machine
    sshd: subprocess.Popen | None = None

    def get(self, path: str, port: int = 5000) -> str:
        """GET http://127.0.0.1:<port><path> from inside the host; the body, or the error."""
        code = ("import sys, urllib.request, urllib.error\n"
                "try: print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
                "except Exception as exc: print('ERROR', exc)")
        result = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", code,
                                 f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=30)
        return result.stdout + result.stderr

    def current(self) -> str:
        link = self.disk / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else ""

    def releases(self) -> list[str]:
        return sorted(p.parent.name for p in (self.disk / "releases").glob("*/.complete"))

    def supervisord_pid(self) -> int:
        pidfile = self.disk / "shared" / "instance" / "supervisord.pid"
        return int(pidfile.read_text()) if pidfile.exists() else 0


class DeployLab:
    def __init__(self, tmp: Path, count: int = 2) -> None:
        self.tmp = tmp
        self.user = f"fabt{os.getpid()}"  # the deploy user, made by start() unless it exists
        self.user_created = False
        # What the deploy user reaches (pytest's tmp is root's alone): the deploy root, the database, Redis.
        self.common = Path(tempfile.mkdtemp(prefix=f"{self.user}-"))
        self.root = self.common / "srv"  # DEPLOY_ROOT: empty here, each host's own disk inside its sshd's mount ns
        self.root.mkdir()
        self.build_dir = tmp / "dist"
        self.database = self.common / "shared.db"
        self.redis_socket = self.common / "redis.sock"
        self.key = tmp / "id_ed25519"
        self.first_deploy: subprocess.CompletedProcess | None = None
        self.processes: list[subprocess.Popen] = []
        tag = os.getpid() % 200 + 20  # 10.200.<tag+i>.0/30: distinct from other runs on this machine
        self.known_hosts = tmp / "known_hosts"
        self.hosts = [Host(f"fabt{os.getpid()}-{i}", f"10.200.{tag + i}.2", tmp / f"host{i}",
                           f"fabt{os.getpid() % 100000}h{i}") for i in range(count)]

    # ----------------------------------------------------------------------------------------- setup

    def start(self) -> None:
        for tool in ("ip", "unshare", "/usr/sbin/sshd", "redis-server", "ssh-keygen"):
            if shutil.which(tool) is None:
                service_missing(tool, FileNotFoundError("not installed (.ci/run installs it)"))
        if os.geteuid() != 0:
            service_missing("network namespaces", PermissionError("the deploy tests need root"))
        self.add_deploy_user()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.tmp / "host_key"))
        (self.common / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())  # sshd reads it as user
        self.processes.append(subprocess.Popen(
            [*self.as_user(), "redis-server", "--port", "0", "--unixsocket", str(self.redis_socket),
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(self.common)],
            stdout=subprocess.DEVNULL))
        for index, host in enumerate(self.hosts):
            self._start_host(index, host)
        wait_until(self.redis_socket.exists, timeout=10)
        # An operator's known_hosts holds more than fab can parse, and its last line may have no newline.
        self.known_hosts.write_text(KNOWN_HOSTS_BEFORE)
        learnt = self.fab(PROJECT_DIR, "learn-host-keys")  # as an operator does once per host
        assert all(f"{h.address}: ssh-ed25519 SHA256:" in learnt.stdout for h in self.hosts), learnt.stdout
        assert "@cert-authority lines are not understood here and are skipped" in learnt.stderr
        known = self.known_hosts.read_text()
        assert known.startswith(KNOWN_HOSTS_BEFORE + "\n")  # kept as it was, the new keys appended
        assert known[len(KNOWN_HOSTS_BEFORE):].count(" ssh-ed25519 ") == len(self.hosts)

    def _start_host(self, index: int, host: Host) -> None:
        outside, inside = host.link, "eth0"
        gateway = host.address.rsplit(".", 1)[0] + ".1"
        _run("ip", "netns", "add", host.name)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", host.name)
        _run("ip", "addr", "add", f"{gateway}/30", "dev", outside)
        _run("ip", "link", "set", outside, "up")
        for command in (("ip", "addr", "add", f"{host.address}/30", "dev", inside),
                        ("ip", "link", "set", inside, "up"), ("ip", "link", "set", "lo", "up")):
            _run("ip", "netns", "exec", host.name, *command)

        # As docs/operations.md prepares a host, with this disk for /srv/flask-restx-starter and the lab's user for app.
        (host.disk / "shared" / "instance" / "logs").mkdir(parents=True)
        _run("chown", "-R", f"{self.user}:{self.user}", str(host.disk))
        settings = host.disk / "shared" / "config_override.py"  # only the user reads it: it holds the secret key
        _run("install", "-m", "600", "-o", self.user, "-g", self.user, "/dev/null", str(settings))
        settings.write_text(self.host_settings())
        config = self.tmp / f"sshd-{index}.conf"
        config.write_text("\n".join((
            "Port 22", f"ListenAddress {host.address}", f"HostKey {self.tmp / 'host_key'}",
            f"AuthorizedKeysFile {self.common / 'authorized_keys'}", f"PidFile {self.tmp / f'sshd-{index}.pid'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "Subsystem sftp internal-sftp", "")))
        # Its own host name too (a UTS namespace): Celery names each host's worker worker-0@<host name>.
        script = (f"hostname {host.name} && mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd "
                  f"&& mount --bind {host.disk} {self.root} {self.python_mounts()}{self.sudoers_mounts()}"
                  f"&& exec /usr/sbin/sshd -D -e -f {config}")
        with (self.tmp / f"sshd-{index}.log").open("wb") as log:
            host.sshd = subprocess.Popen(["ip", "netns", "exec", host.name, "unshare", "-m", "-u", "sh", "-c",
                                          script],
                                         stdout=log, stderr=subprocess.STDOUT)

        def listening() -> bool:
            assert host.sshd is not None and host.sshd.poll() is None, (self.tmp / f"sshd-{index}.log").read_text()
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex((host.address, 22)) == 0

        wait_until(listening, timeout=15)

    @property
    def public_url(self) -> str:
        """The site's address: nginx on the first host (test_deploy's nginx fixture)."""
        return f"http://{self.hosts[0].address}"

    def host_settings(self) -> str:
        """shared/config_override.py of every host: production, one database, one Redis, behind one proxy."""
        return (f"configs = {{\n"
                f"    'app': {{'env': 'production', 'secret_key': {SECRET!r}, 'trusted_proxies': 1,\n"
                f"            'public_url': {self.public_url!r}}},\n"
                f"    'database': {{'url': 'sqlite:///{self.database}'}},\n"
                f"    'redis': {{'url': 'unix://{self.redis_socket}'}},\n"
                f"    'sms': {{'gateway': 'file'}},\n"
                f"}}\n")

    # ------------------------------------------------------------------------------------------ work

    def source(self, name: str, version: str, patch: tuple[str, str, str] | None = None) -> Path:
        """A git repository holding what a build packs, its app at ``version``; ``patch`` = (file, old, new) changes
        one file (committed)."""
        source = copy_project(self.tmp / f"src-{name}", patch)
        version_file = source / "app" / "version.py"
        text = version_file.read_text()
        assert '__version__ = "' in text
        version_file.write_text(text.replace('__version__ = "', f'__version__ = "{version}+', 1))
        commit(source, f"version {version}")
        return source

    def fab_command(self, *args: str) -> list[str]:
        return [FAB, "-i", str(self.key), *args]

    def fab_env(self, source: Path) -> dict[str, str]:
        """The environment of the tests' fab runs: the settings the README has you export (DEPLOY_HOSTS and
        DEPLOY_USER are given as -H user@host here) and the lab's own."""
        return {**os.environ, "DEPLOY_HOSTS": "", "DEPLOY_ROOT": str(self.root), "DEPLOY_PYTHON": BASE_PYTHON,
                "BUILD_DIR": str(self.build_dir / source.name), "DEPLOY_HEALTH_TIMEOUT": "15",
                "DEPLOY_KNOWN_HOSTS": str(self.known_hosts), "DEPLOY_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
                "DEPLOY_MIN_FREE_MB": "100", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def fab(self, source: Path, *args: str, hosts: list[Host] | None = None, check: bool = True,
            env: dict[str, str] | None = None, targets: str = "") -> subprocess.CompletedProcess:
        """Run fab in ``source`` against ``hosts`` (all by default; ``targets`` is a -H value instead)."""
        targets = targets or ",".join(f"{self.user}@{h.address}" for h in (self.hosts if hosts is None else hosts))
        command = self.fab_command(*(["-H", targets] if args[0] != "build" else []), *args)
        result = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=300,
                                env={**self.fab_env(source), **(env or {})})
        if check:
            assert result.returncode == 0, f"fab {' '.join(args)}: {result.stdout}\n{result.stderr}"
        return result

    def version(self, host: Host, port: int = 5000) -> str:
        """The version /api/health reports on ``host``'s process at ``port``."""
        body = host.get("/api/health", port)
        marker = '"version": "'
        assert marker in body, body
        return body.split(marker, 1)[1].split('"', 1)[0]

    # -------------------------------------------------------------------------------------- teardown

    def stop(self) -> None:
        for host in self.hosts:
            pid = host.supervisord_pid()
            if pid and process_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)  # supervisord stops its processes first
                with contextlib.suppress(AssertionError):
                    wait_until(lambda pid=pid: not process_alive(pid), timeout=40)
            if host.sshd and host.sshd.poll() is None:
                host.sshd.terminate()
                host.sshd.wait(10)
            subprocess.run(["ip", "netns", "delete", host.name], capture_output=True, timeout=30)
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        shutil.rmtree(self.common, ignore_errors=True)
        if self.user_created:
            subprocess.run(["userdel", "--force", "--remove", self.user], capture_output=True, timeout=30)

    # --------------------------------------------------------------------------------- the deploy user

    def add_deploy_user(self) -> None:
        """The unprivileged user fab deploys as (docs/operations.md: useradd --system … app), owning self.common.
        Its password is "*", not useradd's locked "!": this sshd runs without PAM and would refuse a locked user."""
        for tool in ("useradd", "userdel", "setpriv", "nsenter"):
            if shutil.which(tool) is None:
                service_missing(tool, FileNotFoundError("not installed (util-linux, passwd)"))
        if subprocess.run(["id", self.user], capture_output=True).returncode:
            _run("useradd", "--system", "--create-home", "--shell", "/bin/bash", "--password", "*", self.user)
            self.user_created = True
        _run("chown", f"{self.user}:{self.user}", str(self.common), str(self.root))

    def as_user(self) -> list[str]:
        """A command prefix that runs the rest as the deploy user, in the same process (exec, no fork)."""
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--reset-env"]

    def python_mounts(self) -> str:
        """Shell that lets the deploy user run BASE_PYTHON inside a host: when a directory above it is closed to
        others (a Python under /root), a tmpfs over that directory in the host's mount namespace, with only the
        Python bound back in. "" when nothing is closed."""
        prefix = Path(sys.base_prefix)
        closed = next((p for p in reversed(prefix.parents) if not p.stat().st_mode & 0o001), None)
        if closed is None:
            return ""
        stage = self.common / "python"
        stage.mkdir(exist_ok=True)
        return (f"&& mount --bind {prefix} {stage} && mount -t tmpfs -o mode=755 tmpfs {closed} "
                f"&& mkdir -p {prefix} && mount --bind {stage} {prefix} ")

    def sudoers_mounts(self) -> str:
        """Shell that installs deploy/sudoers, for the lab's user, as the host's /etc/sudoers.d (a directory bound
        over it in the host's mount namespace: this machine's stays as it is). "" without sudo."""
        if shutil.which("sudo") is None or not Path("/etc/sudoers.d").is_dir():
            return ""
        rules = self.common / "sudoers.d"
        if not rules.exists():
            rules.mkdir()
            rule = (PROJECT_DIR / "deploy" / "sudoers").read_text().replace("\napp ALL=", f"\n{self.user} ALL=")
            (rules / "flask-restx-starter").write_text(rule)
            (rules / "flask-restx-starter").chmod(0o440)
        return f"&& mount --bind {rules} /etc/sudoers.d "

    def in_host(self, host: Host, *command: str) -> subprocess.CompletedProcess:
        """Run ``command`` as the deploy user inside ``host`` (its network, host name and mount namespaces)."""
        assert host.sshd is not None
        return subprocess.run(["nsenter", "-t", str(host.sshd.pid), "-m", "-u", "-n", *self.as_user(), *command],
                              capture_output=True, text=True, timeout=30)
