"""Helpers tests import (``from tests.support import wait_until``): paths, the secret, services, polling."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
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


def run_manage(*args: str, env: Mapping[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    """`python manage.py ARGS` in the project with the testing settings (memory:// Redis unless ``env`` says
    otherwise) plus ``env``, none of the caller's own APP_* variables; output captured as text."""
    base = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "testing",
            "SECRET_KEY": SECRET, "REDIS_URL": "memory://"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env={**base, **env}, input=stdin,
                          capture_output=True, text=True, timeout=60)


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
