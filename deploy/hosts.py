"""Reaching the hosts: who they are, connections with short timeouts whose host keys must be known, and the checks
every host passes before a deploy changes any of them."""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import shlex
import socket
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection
from invoke.exceptions import Exit

NAME = "flask-restx-starter"  # the deploy root, the builds, the systemd unit
MIN_PYTHON = (3, 11)
q = shlex.quote


def printable(text: str) -> str:
    """``text`` from a host without control characters (C0, C1, DEL, and format ones such as bidi overrides): a host
    must not move the cursor, erase lines or recolour what the operator reads. Line breaks become spaces."""
    text = text.replace("\r\n", " ").replace("\n", " ")
    return "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf")).strip()


def deploy_root() -> str:
    root = os.environ.get("DEPLOY_ROOT", f"/srv/{NAME}")
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", root) or "/../" in f"{root}/":
        raise Exit(f"DEPLOY_ROOT must be an absolute path of letters, digits and . _ - / (supervisord.ini and the "
                   f"shell commands on the hosts need no quoting): {root!r}", code=2)
    return root


def _with_user(hosts: list[str]) -> list[str]:
    user = os.environ.get("DEPLOY_USER", "")
    return [h if "@" in h or not user else f"{user}@{h}" for h in hosts]


def deploy_hosts() -> list[str]:
    """DEPLOY_HOSTS, each with DEPLOY_USER unless it names its own user."""
    return _with_user([h.strip() for h in os.environ.get("DEPLOY_HOSTS", "").split(",") if h.strip()])


def named_hosts() -> list[str]:
    """The hosts of this run: fab's -H (it wins), else DEPLOY_HOSTS; DEPLOY_USER for those that name no user."""
    from fabric.main import program  # the running `fab`; its parsed -H

    try:
        given = program.core[0].args.hosts.value
    except (AttributeError, IndexError, KeyError, TypeError):
        given = None
    return _with_user([h.strip() for h in given.split(",") if h.strip()]) if given else deploy_hosts()


def connect_timeout() -> int:
    return max(int(os.environ.get("DEPLOY_CONNECT_TIMEOUT", "10")), 1)


def known_hosts_file() -> Path:
    return Path(os.environ.get("DEPLOY_KNOWN_HOSTS", "~/.ssh/known_hosts")).expanduser()


def keep_count() -> int:
    return max(int(os.environ.get("DEPLOY_KEEP", "5")), 2)


def command_timeout() -> int:
    return max(int(os.environ.get("DEPLOY_COMMAND_TIMEOUT", "900")), 60)


class _AcceptUnsaved(paramiko.MissingHostKeyPolicy):
    """Accept a key not on record without writing the known_hosts file (paramiko's AutoAddPolicy rewrites it
    whole, dropping what it cannot parse); record_host_key appends the one line. A revoked key is refused."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if (key.get_name(), key.get_base64()) in _revoked_keys():
            raise paramiko.SSHException(f"the key {hostname} shows is marked @revoked in {known_hosts_file()}")
        client.get_host_keys().add(hostname, key.get_name(), key)


def _known_lines() -> list[tuple[int, str]]:
    path = known_hosts_file()
    if not path.is_file():
        return []
    lines = enumerate(path.read_text(errors="replace").splitlines(), 1)
    return [(number, line.strip()) for number, line in lines if line.strip() and not line.strip().startswith("#")]


def _revoked_keys() -> set[tuple[str, str]]:
    """(type, base64) of every key an @revoked line names: never trusted, whatever other lines say."""
    revoked = set()
    for _, line in _known_lines():
        fields = line.split()
        if fields[0] == "@revoked" and len(fields) >= 4:
            revoked.add((fields[2], fields[3]))
    return revoked


def _known_keys(warn: bool = True) -> paramiko.HostKeys:
    """The keys in DEPLOY_KNOWN_HOSTS, read line by line: keys an @revoked line names are left out (so refused);
    @cert-authority lines (which paramiko cannot use) and key types it does not know are skipped, with a warning
    for the markers."""
    keys, revoked = paramiko.HostKeys(), _revoked_keys()
    for number, line in _known_lines():
        if line.startswith("@"):
            if warn and not line.startswith("@revoked"):
                print(f"WARNING: {known_hosts_file()}:{number}: {line.split()[0]} lines are not understood here "
                      f"and are skipped", file=sys.stderr)
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except Exception:  # a key type or encoding paramiko does not know: not a key it can check against
            entry = None
        if entry is not None and entry.key is not None:
            if (entry.key.get_name(), entry.key.get_base64()) in revoked:
                continue
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys


def _connection(host: str, config: Config, learn: bool) -> Connection:
    """A connection to ``host`` whose every wait (TCP connect, SSH banner, login, opening a channel) ends after
    DEPLOY_CONNECT_TIMEOUT, and which refuses a host key that is not in DEPLOY_KNOWN_HOSTS (Fabric's default is to
    accept any); ``learn`` accepts it, for `fab learn-host-keys`."""
    kwargs: dict[str, Any] = dict(config.connect_kwargs)
    timeout = int(kwargs.pop("timeout", None) or connect_timeout())  # fab -t wins
    kwargs.update(banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout)
    config.timeouts.command = command_timeout()  # no remote command waits for ever
    conn = Connection(host, config=config, connect_timeout=timeout, connect_kwargs=kwargs)
    known, mine = _known_keys(warn=learn), conn.client.get_host_keys()  # warned where the file is written
    for name in known:
        for kind, key in known[name].items():
            mine.add(name, kind, key)
    conn.client.set_missing_host_key_policy(_AcceptUnsaved() if learn else paramiko.RejectPolicy())
    return conn


def _notice_silence(conn: Connection) -> None:
    """Make a host that stops answering mid-run end the command waiting on it within about 30 s: SSH keepalives
    every 5 s, and TCP gives up on data unacknowledged for 30 s (or an idle link silent for 20 s)."""
    transport = conn.client.get_transport()
    transport.set_keepalive(5)
    sock = transport.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 30000)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _why_not(conn: Connection, exc: BaseException) -> str:
    where = f"{conn.host}:{conn.port}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"{where}: its host key CHANGED since it was recorded in {known_hosts_file()} (a new server, or "
                f"someone in between): refusing; remove the old line once you know why")
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return (f"{where}: its host key is not in {known_hosts_file()}; compare its fingerprint with the server's "
                f"and record it with `fab -H {conn.original_host} learn-host-keys`")
    if isinstance(exc, paramiko.AuthenticationException):
        return f"{where}: login as {conn.user} refused (which key? -i KEY, ssh-agent or ~/.ssh/config)"
    if (isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc).lower()
            or "No existing session" in str(exc) or "banner" in str(exc)):
        return f"{where}: no answer within {conn.connect_timeout} s (DEPLOY_CONNECT_TIMEOUT)"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return f"{where}: refuses connections (is sshd running?)"
    return f"{where}: cannot connect: {type(exc).__name__}: {exc}"


def open_all(config: Config, learn: bool = False, lock: bool = False) -> list[Connection]:
    """Connect to every host of the run, or exit naming each one that cannot be reached (all are tried); with
    ``lock``, also hold each host's deploy lock until fab exits, or exit naming the hosts another run holds."""
    hosts = named_hosts()
    if not hosts:
        raise Exit("no hosts: name them with -H host1,host2 or DEPLOY_HOSTS", code=2)
    conns, problems = [], []
    for host in hosts:
        conn = _connection(host, config, learn)
        try:
            conn.open()
            _notice_silence(conn)
            if lock:
                _lock(conn)
        except Exit as exc:
            problems.append(str(exc.message))
            continue
        except Exception as exc:  # each is turned into a sentence naming the host
            problems.append(_why_not(conn, exc))
            continue
        conns.append(conn)
    if problems:
        for conn in conns:
            conn.close()
        raise Exit("cannot reach every host; nothing was changed:\n  " + "\n  ".join(problems), code=1)
    return conns


def _lock(conn: Connection) -> None:
    """Take the host's deploy lock (flock on <root>/.fab.lock) in a session that lives as long as this connection:
    when fab exits, however it exits, the session ends and the lock is free. Exit if another run holds it."""
    root = deploy_root()
    channel = conn.client.get_transport().open_session(timeout=connect_timeout())
    lock = q(root + "/.fab.lock")
    holder = q(f"{getpass.getuser()}@{socket.gethostname()}, pid {os.getpid()}")
    channel.exec_command(f"mkdir -p {q(root)} && exec flock -n -E 75 {lock} sh -c 'echo \"$(date -u +%FT%TZ) "
                         f"fab run of \"$1\"\" > \"$2\"; echo locked; exec cat >/dev/null' lock {holder} {lock}")
    deadline, said = time.monotonic() + connect_timeout(), b""
    while b"\n" not in said:
        if channel.recv_ready():
            said += channel.recv(64)
        elif channel.exit_status_ready() or time.monotonic() > deadline:
            status = channel.recv_exit_status() if channel.exit_status_ready() else None
            channel.close()
            if status == 75:
                holder = conn.run(f"head -c 300 {lock}", hide=True, warn=True).stdout.strip()
                raise Exit(f"{conn.host}: another fab deploy or rollback is running there ({printable(holder)}; "
                           f"lock {root}/.fab.lock, docs/operations.md says how to break it); wait for it", code=1)
            raise Exit(f"{conn.host}: could not take the deploy lock {root}/.fab.lock (status {status})", code=1)
        else:
            time.sleep(0.02)
    conn.deploy_lock = channel  # held as long as the connection


def record_host_key(conn: Connection) -> str:
    """Append the key ``conn``'s server showed to DEPLOY_KNOWN_HOSTS (unless there already); its fingerprint."""
    key = conn.client.get_transport().get_remote_server_key()
    name = conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"
    path = known_hosts_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if key.get_name() not in (_known_keys(warn=False).lookup(name) or {}):
        ends_open = path.is_file() and not path.read_bytes().endswith(b"\n") and path.stat().st_size > 0
        with path.open("a") as file:
            file.write(f"{chr(10) if ends_open else ''}{name} {key.get_name()} {key.get_base64()}\n")
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


# ------------------------------------------------------------------------------------------ before a deploy


@dataclass
class HostFacts:
    user: str
    python: str  # major.minor.micro of DEPLOY_PYTHON, or "none"
    free_mb: int
    settings_mode: str  # the octal mode of shared/config_override.py, or "missing"


def facts(conn: Connection) -> HostFacts:
    root, python = deploy_root(), os.environ.get("DEPLOY_PYTHON", "python3")
    settings = q(f"{root}/shared/config_override.py")
    script = (f"echo $(id -un); "
              f"{q(python)} -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])' 2>/dev/null || echo none; "
              f"d={q(root)}; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; "
              f"df -Pk \"$d\" | awk 'NR == 2 {{ print int($4 / 1024) }}'; "
              f"stat -c %a {settings} 2>/dev/null || echo missing")
    user, version, free, mode = conn.run(script, hide=True).stdout.split()
    return HostFacts(user, version, int(free), mode)


def problems_of(conn: Connection, found: HostFacts, wheels_python: str | None) -> list[str]:
    """What stops a deploy to this host, each a sentence that names it and says what to do."""
    host, root = conn.host, deploy_root()
    need = int(os.environ.get("DEPLOY_MIN_FREE_MB", "1024"))
    problems = []
    if found.python == "none":
        problems.append(f"{host}: no {os.environ.get('DEPLOY_PYTHON', 'python3')} (DEPLOY_PYTHON)")
    elif tuple(map(int, found.python.split(".")))[:2] < MIN_PYTHON:
        problems.append(f"{host}: Python {found.python}; the app needs {'.'.join(map(str, MIN_PYTHON))} or newer")
    elif wheels_python and found.python.rsplit(".", 1)[0] != wheels_python.rsplit(".", 1)[0]:
        problems.append(f"{host}: Python {found.python}, but the build's wheels are for {wheels_python}: build "
                        f"without --wheels, or on Python {found.python}")
    elif wheels_python and found.python != wheels_python:
        print(f"{host}: WARNING: Python {found.python}, the build's wheels were chosen on {wheels_python}: a "
              f"requirement only some patch levels need may be missing (the install then fails and changes "
              f"nothing; build without --wheels, or on {found.python})", file=sys.stderr)
    if found.free_mb < need:
        problems.append(f"{host}: {found.free_mb} MB free under {root}; a deploy needs {need} (DEPLOY_MIN_FREE_MB)")
    if found.settings_mode == "missing":
        problems.append(f"{host}: no {root}/shared/config_override.py; write the host's settings first "
                        f"(docs/operations.md, Prepare each host)")
    elif int(found.settings_mode, 8) & 0o077:
        problems.append(f"{host}: {root}/shared/config_override.py (mode {found.settings_mode}) can be read by "
                        f"other users and holds the secret key and passwords: chmod 600 it")
    return problems
