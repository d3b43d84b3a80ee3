"""A real server whose Redis or database goes away and comes back: 503 within 2 s, then 200 again
without a restart. Shared services are never stopped: a private redis-server, and a TCP relay to the
database that the test cuts (tests/fixtures/relays.py; test_database_deadlines.py freezes one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.accounts import PASSWORD
from tests.support import PROJECT_DIR, free_port, service_missing, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, which it may stop and start again on the same port."""
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server", FileNotFoundError("not on PATH"))
    port = free_port()
    processes: list[subprocess.Popen] = []

    def start() -> None:
        processes.append(subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no", "--dir", str(tmp_path)],
                                          stdout=subprocess.DEVNULL))

    def stop() -> None:
        processes[-1].terminate()
        processes[-1].wait(10)

    start()
    yield port, start, stop
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_redis_outage_is_503_within_two_seconds_and_recovers(live_server, private_redis):
    port, start, stop = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    wait_until(lambda: redis.Redis.from_url(url).ping(), timeout=10)
    server = live_server(env={"REDIS_URL": url, "APP_METRICS__ENABLED": "true"})
    me = f"{server.url}/api/users/me"
    assert requests.get(me, headers={"token": "x" * 43}, timeout=5).status_code == 401

    stop()
    started = time.monotonic()
    outage = requests.get(me, headers={"token": "x" * 43}, timeout=5)
    assert time.monotonic() - started < 2
    assert (outage.status_code, outage.json()["status"]) == (503, "SERVICE_UNAVAILABLE")
    health = requests.get(f"{server.url}/api/health", timeout=5)
    assert health.status_code == 503 and health.json()["data"]["redis"] == "down"
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text  # served without Redis
    assert 'dependency_errors_total{dependency="redis",error="ConnectionError"} 1.0' in metrics
    assert 'http_requests_total{endpoint="/api/users/me",method="GET",status="503"} 1.0' in metrics

    start()
    wait_until(lambda: requests.get(f"{server.url}/api/health", timeout=5).status_code == 200, timeout=15)
    assert requests.get(me, headers={"token": "x" * 43}, timeout=5).status_code == 401


def login_on(server, test_settings) -> str:
    """Make an account in the server's database and log in through the server."""
    from app import create_app
    from app.extensions import db
    from app.services.users import create_user

    app = create_app(test_settings)
    with app.app_context():
        create_user("+8613800138000", "correct horse battery", "n")
        db.engine.dispose()
    response = requests.post(f"{server.url}/api/auth/login", timeout=10,
                             json={"account": "13800138000", "password": "correct horse battery"})
    return response.json()["data"]["token"]


if os.environ.get("TEST_DATABASE_URL"):  # SQLite has no server to lose: nothing to collect without one

    def test_database_outage_is_503_within_two_seconds_and_recovers(live_server, database_url, test_settings,
                                                                    tcp_relay):
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        relay = tcp_relay(url.host or "127.0.0.1", url.port or 5432)
        relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        server = live_server(env={"DATABASE_URL": relayed})
        token = login_on(server, test_settings)
        files, me = f"{server.url}/api/files/", f"{server.url}/api/users/me"  # files: a query every time
        assert requests.get(files, headers={"token": token}, timeout=5).status_code == 200
        assert requests.get(me, headers={"token": token}, timeout=5).status_code == 200  # caches the user's row

        relay.cut()
        started = time.monotonic()
        outage = requests.get(files, headers={"token": token}, timeout=5)
        assert time.monotonic() - started < 2
        assert (outage.status_code, outage.json()["status"]) == (503, "SERVICE_UNAVAILABLE")
        assert requests.get(f"{server.url}/api/health", timeout=5).json()["data"]["database"] == "down"
        # Checking a token needs only Redis: the signed-in user's own profile still answers, from the snapshot.
        assert requests.get(me, headers={"token": token}, timeout=5).status_code == 200

        relay.resume()
        wait_until(lambda: requests.get(files, headers={"token": token}, timeout=5).status_code == 200, timeout=15)


def test_a_burst_of_200_concurrent_requests_on_a_small_pool_gets_only_200_or_503(live_server, server_env):
    """200 signed-in reads that each query the database (a file listing), at once, against 6 request threads and
    2 pooled connections (+10 overflow): they queue, or answer 503 when no connection frees up within
    pool_timeout; never 500, never a dropped one."""
    phone = "+8613800138999"
    server = live_server(env={"APP_DATABASE__POOL_SIZE": "2", "APP_DATABASE__POOL_TIMEOUT": "1"})  # migrates
    subprocess.run([sys.executable, "manage.py", "create-admin", "--phone", phone, "--nickname", "burst",
                    "--password", PASSWORD], cwd=PROJECT_DIR, env=server_env, check=True, capture_output=True,
                   timeout=60)
    login = requests.post(f"{server.url}/api/auth/login", json={"account": phone, "password": PASSWORD}, timeout=10)
    token = login.json()["data"]["token"]
    start = threading.Barrier(200)

    def one(_: int) -> int | str:
        start.wait()
        try:
            return requests.get(f"{server.url}/api/files/", headers={"token": token}, timeout=30).status_code
        except requests.RequestException as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(200) as pool:
        outcomes = Counter(pool.map(one, range(200)))
    print(f"burst of 200: {dict(outcomes)}")
    assert set(outcomes) <= {200, 503}, outcomes
    assert outcomes[200] > 0
