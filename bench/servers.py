"""The servers bench/run.py compares, each serving the same app with the same number of processes, and their
database. Each non-Tornado server loads the app in every worker (never before a fork), as gunicorn does."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PHONE, PASSWORD = "+8613800138000", "quiet harbour kestrel 1"  # the admin each run creates
THREADS = 4  # request threads per process for the threaded servers, as tornado_server.py's server.threads


def command(name: str, python: str, port: int, processes: int) -> list[str]:
    """The command line that serves the app with ``name`` on 127.0.0.1:``port``."""
    bin_dir = Path(python).parent
    address = f"127.0.0.1:{port}"
    if name == "tornado":
        return [python, "tornado_server.py", "--port", str(port), "--processes", str(processes)]
    if name == "gunicorn":  # sync workers, gunicorn's default and its fastest here
        return [str(bin_dir / "gunicorn"), "--workers", str(processes), "--bind", address, "app:create_app()"]
    if name == "uwsgi":  # pyuwsgi: uWSGI's C core from PyPI; its own HTTP/1.1 parser in each worker, no router
        return [str(bin_dir / "uwsgi"), "--http11-socket", address, "--master", "--processes", str(processes),
                "--threads", str(THREADS), "--lazy-apps", "--module", "app:create_app()", "--die-on-term",
                "--need-app", "--disable-logging"]
    if name == "granian":  # Rust HTTP server; WSGI calls on its blocking threads
        return [str(bin_dir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(processes), "--blocking-threads", str(THREADS), "--no-access-log", "--factory",
                "app:create_app"]
    raise ValueError(f"unknown server {name!r}")


def installed(name: str, python: str) -> bool:
    first = command(name, python, 0, 1)[0]
    return first == python or Path(first).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on {port} not ready within {timeout}s")


@contextmanager
def database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this run; dropped afterwards."""
    import psycopg

    name = f"bench_{os.getpid()}"
    plain = re.sub(r"^postgresql(\+\w+)?://", "postgresql://", server_url)  # for psycopg itself
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield plain.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """The server running until the block ends; yields its process id. It runs in a process group of its own, and
    the whole group is ended: granian's workers outlived their master when only the master was signalled."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_ready(port, process)
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # a worker still there once its master is gone
            os.killpg(process.pid, signal.SIGKILL)


def bench_env(db_url: str, redis_url: str, prefix: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update({"APP_ENV": "production", "SECRET_KEY": "bench-" + "s" * 40, "DATABASE_URL": db_url,
                "REDIS_URL": redis_url, "APP_REDIS__PREFIX": prefix, "APP_LOG__FILE": str(work / "app.log"),
                "APP_AUTH__MAX_FAILURES_PER_IP": "1000000",
                "APP_APP__PUBLIC_URL": "http://127.0.0.1",  # production refuses other hosts
                "APP_SMS__GATEWAY": "file", "APP_SMS__OUTBOX": str(work / "sms.jsonl")})
    return env


def login_token(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/api/auth/login", body=json.dumps({"account": PHONE, "password": PASSWORD}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = json.loads(response.read())
    if response.status != 200:
        raise SystemExit(f"login failed: {data}")
    return str(data["data"]["token"])
