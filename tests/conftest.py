"""Fixtures: an app and client per test on a fresh database and a fresh Redis namespace, and live servers.

Which services: ``TEST_DATABASE_URL`` (a PostgreSQL or MySQL/MariaDB URL; default SQLite in a temporary
directory) and ``REDIS_URL`` (default ``memory://``). Each test gets its own PostgreSQL schema, MySQL
database or SQLite file, and its own Redis key prefix, dropped afterwards. With ``REQUIRE_SERVICES=1``
a configured service that cannot be reached fails the test instead of skipping it.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PROJECT_DIR = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("REDIS_URL", "") or "memory://"
SECRET = "test-secret-" + "x" * 40


def service_missing(what: str, error: BaseException) -> None:
    """Skip, or fail under REQUIRE_SERVICES=1, when a configured service cannot be reached."""
    message = f"{what} is not reachable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


def deep_merge(base: dict, update: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the condition may raise until it holds
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")


# --- databases ---------------------------------------------------------------------------------


@contextmanager
def fresh_database(base_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: a SQLite file, a PostgreSQL schema or a MySQL database."""
    if not base_url or base_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = make_url(base_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            if url.get_backend_name() == "postgresql":
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
                fresh = url.update_query_dict({"options": f"-csearch_path={name}"})
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                fresh = url.set(database=name)
    except Exception as exc:
        admin.dispose()
        service_missing(f"database {url.render_as_string(hide_password=True)}", exc)
    try:
        yield fresh.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if url.get_backend_name() == "postgresql":
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            else:
                conn.execute(text(f"DROP DATABASE `{name}`"))
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """This test's own database on TEST_DATABASE_URL's server (SQLite when unset)."""
    with fresh_database(TEST_DATABASE_URL, tmp_path) as url:
        yield url


# --- redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_namespace() -> Iterator[tuple[str, str]]:
    """(url, prefix) of this test's Redis namespace; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    if TEST_REDIS_URL.startswith("memory://"):
        yield TEST_REDIS_URL, prefix
        return
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {TEST_REDIS_URL}", exc)
    try:
        yield TEST_REDIS_URL, prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def real_redis_url() -> str:
    """A real Redis server, for what memory:// cannot do (several processes): REDIS_URL's, or the local one."""
    import redis

    url = TEST_REDIS_URL if not TEST_REDIS_URL.startswith("memory://") else "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis at {url}", exc)
    return url


@pytest.fixture
def real_redis_settings(real_redis_url: str, redis_namespace: tuple[str, str]) -> Iterator[dict]:
    """App settings on a real Redis under this test's prefix, whose keys are deleted afterwards."""
    import redis

    prefix = redis_namespace[1]
    yield {"redis": {"url": real_redis_url, "prefix": prefix}}
    client = redis.Redis.from_url(real_redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# --- apps --------------------------------------------------------------------------------------


@pytest.fixture
def test_settings(database_url: str, redis_namespace: tuple[str, str], tmp_path: Path) -> dict:
    """Settings every test app starts from: its own database, Redis namespace and files."""
    redis_url, prefix = redis_namespace
    return {
        "app": {"env": "testing", "secret_key": SECRET},
        "database": {"url": database_url},
        "redis": {"url": redis_url, "prefix": prefix},
        "log": {"file": str(tmp_path / "logs" / "app.log")},
        "sms": {"outbox": str(tmp_path / "sms_outbox.jsonl")},
        "files": {"local_dir": str(tmp_path / "uploads")},
    }


@pytest.fixture
def make_app(test_settings: dict) -> Iterator[Callable[..., Any]]:
    """``make_app(overrides, extra_namespaces=..., create_tables=True)``: an app, disposed afterwards."""
    from app import create_app
    from app.extensions import db

    apps = []

    def factory(overrides: Mapping | None = None, create_tables: bool = True, **kwargs: Any) -> Any:
        app = create_app(deep_merge(test_settings, overrides or {}), **kwargs)
        if create_tables:
            with app.app_context():
                db.create_all()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    return make_app()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


# --- live servers ------------------------------------------------------------------------------


class LiveServer:
    """A real ``tornado_server.py`` process on a free port."""

    def __init__(self, env: dict[str, str], args: list[str], scheme: str = "http") -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = Path(env["APP_LOG__FILE"]).with_name("server.out")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "tornado_server.py"), "--port", str(self.port), *args],
            cwd=PROJECT_DIR, env=env, stdout=self._out, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0, **kwargs: Any) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            return requests.get(f"{self.url}/api/health/live", timeout=1, **kwargs).status_code == 200

        try:
            wait_until(ready, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server output ---\n{self.output()}") from None

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        return self.process.returncode


@pytest.fixture
def server_env(database_url: str, redis_namespace: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment for a server process: this test's database and Redis namespace, migrations at start."""
    redis_url, prefix = redis_namespace
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    env.update({
        "APP_ENV": "testing",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "APP_REDIS__PREFIX": prefix,
        "APP_DATABASE__AUTO_MIGRATE": "true",
        "APP_LOG__FILE": str(tmp_path / "server-logs" / "app.log"),
        "APP_FILES__LOCAL_DIR": str(tmp_path / "server-uploads"),
        "APP_SMS__OUTBOX": str(tmp_path / "server-sms-outbox.jsonl"),
        "APP_METRICS__DIRECTORY": str(tmp_path / "server-metrics"),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(PROJECT_DIR)]),
    })
    return env


@pytest.fixture
def live_server(server_env: dict[str, str]) -> Iterator[Callable[..., LiveServer]]:
    """``live_server(*args, env={...})`` starts a server and waits until it answers; stopped afterwards."""
    servers: list[LiveServer] = []

    def start(*args: str, env: Mapping[str, str] | None = None, scheme: str = "http",
              wait: bool = True, **wait_kwargs: Any) -> LiveServer:
        server = LiveServer({**server_env, **(env or {})}, list(args), scheme=scheme)
        servers.append(server)
        if wait:
            server.wait_ready(**wait_kwargs)
        return server

    yield start
    for server in servers:
        server.stop()


# --- accounts ----------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts_settings(real_redis_settings: dict) -> dict:
    """Settings for account tests: a real Redis and the file SMS gateway (codes readable from the outbox)."""
    return {**real_redis_settings, "sms": {"gateway": "file"}}


@pytest.fixture
def make_user(app: Any) -> Callable[..., Any]:
    """``make_user(phone, role="user", password=PASSWORD, email=None)``: an account made through the service."""
    from app.services.users import create_user

    def factory(phone: str, role: str = "user", password: str = PASSWORD, email: str | None = None) -> Any:
        with app.app_context():
            user = create_user(phone, password, f"user {phone[-4:]}", email, role=role)
            return user.id

    return factory


def login(client: Any, account: str, password: str = PASSWORD, **kwargs: Any) -> dict:
    """Log in through the API; the tokens payload."""
    response = client.post("/api/auth/login", json={"account": account, "password": password}, **kwargs)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def bearer(token: str) -> dict[str, str]:
    return {"token": token}


def sms_outbox(app: Any) -> list[dict]:
    """The messages the file SMS gateway wrote for ``app`` (oldest first)."""
    import json

    from app.config import settings_of

    path = Path(settings_of(app).sms.outbox)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def send_sms_code(client: Any, app: Any, phone: str, purpose: str) -> str:
    """Ask for a code through the API and read it from the file gateway's outbox."""
    response = client.post("/api/common/sms/send", json={"phone": phone, "purpose": purpose})
    assert response.status_code == 200, response.get_json()
    return str(sms_outbox(app)[-1]["code"])


class Inbox:
    """What a real SMTP server (aiosmtpd) received."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    """(port, inbox) of an SMTP server on loopback."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()
