"""Concurrent requests against one real server: one ticket per code, one message per cooldown."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e
THREADS = 12


def at_once(call) -> list[int]:
    """Run ``call`` in THREADS threads released together; their status codes."""
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        status = call()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses


@pytest.fixture
def server(live_server, real_redis_settings, tmp_path):
    outbox = tmp_path / "outbox.jsonl"
    redis = real_redis_settings["redis"]
    env = {"REDIS_URL": redis["url"], "APP_REDIS__PREFIX": redis["prefix"], "APP_SMS__GATEWAY": "file",
           "APP_SMS__OUTBOX": str(outbox), "APP_SERVER__THREADS": "8"}
    return live_server(env=env), outbox


def lines(outbox: Path) -> list[dict]:
    return [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []


def send(url: str) -> int:
    return requests.post(f"{url}/api/common/sms/send", json={"phone": "13800138000", "purpose": "register"},
                         timeout=10).status_code


def test_parallel_sends_inside_the_cooldown_send_one_message(server):
    server, outbox = server
    statuses = at_once(lambda: send(server.url))
    assert sorted(statuses) == [200] + [429] * (THREADS - 1)
    assert len(lines(outbox)) == 1


def test_parallel_verifies_of_the_right_code_issue_one_ticket(server):
    server, outbox = server
    assert send(server.url) == 200
    code = lines(outbox)[0]["code"]
    body = {"phone": "13800138000", "purpose": "register", "code": code}
    statuses = at_once(lambda: requests.post(f"{server.url}/api/common/sms/verify", json=body, timeout=10).status_code)
    assert sorted(statuses) == [200] + [400] * (THREADS - 1)
