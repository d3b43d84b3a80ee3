"""Helpers tests import (``from tests.support import wait_until``): paths, the secret, services, polling."""

from __future__ import annotations

import copy
import gc
import os
import shutil
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


HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def spec_operations(spec: dict) -> Any:
    """(path, method, operation) for every operation of a Swagger 2.0 or OpenAPI 3.1 spec (not a path's own keys)."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def deep_merge(base: dict, update: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def run_manage(*args: str, env: Mapping[str, str], stdin: str = "",
               cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` in the project (or a copy of it at ``cwd``) with the testing settings (memory://
    Redis unless ``env`` says otherwise) plus ``env``, none of the caller's own APP_* variables; output as text."""
    base = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, "APP_ENV": "testing",
            "SECRET_KEY": SECRET, "REDIS_URL": "memory://"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=cwd, env={**base, **env}, input=stdin,
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


def timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``call(*args, **kwargs)`` and the seconds it took, the garbage collector paused meanwhile: a full collection
    of this process's heap (the suite's, far larger than a served app's) can outlast the deadline being checked."""
    enabled = gc.isenabled()
    gc.disable()
    started = time.monotonic()
    try:
        return call(*args, **kwargs), time.monotonic() - started
    finally:
        if enabled:
            gc.enable()


# What a build packs, copied by copy_project (tests of fab build and deploy work on a copy, never on this tree).
PROJECT_ITEMS = ("app", "migrations", "deploy", "requirements.txt", "supervisord.ini", "logging.ini")


def copy_project(target: Path, patch: tuple[str, str, str] | None = None) -> Path:
    """A copy of what a build packs (and the fabfile) at ``target``, committed to a git repository of its own, with
    ``patch`` = (file, old, new) applied before the commit; ``target``."""
    target.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in (*PROJECT_ITEMS, *[p.name for p in PROJECT_DIR.glob("*.py")]):
        path = PROJECT_DIR / item
        if path.is_dir():
            shutil.copytree(path, target / item, ignore=ignore)
        else:
            shutil.copy2(path, target / item)
    (target / "config_override.py").write_text("configs = {}\n")
    if patch:
        file, old, new = patch
        content = (target / file).read_text()
        assert old in content, f"{file} no longer contains {old!r}: update this test"
        (target / file).write_text(content.replace(old, new, 1))
    commit(target, "the project as tested")
    return target


def commit(repository: Path, message: str) -> str:
    """Commit everything in ``repository`` (made a git repository if it is not one); the new HEAD."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        subprocess.run(command, cwd=repository, check=True, capture_output=True, env=env, timeout=30)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


def read_until_closed(sock: socket.socket, timeout: float = 5) -> bytes:
    """What a server sends on ``sock`` until it closes the connection (or ``timeout`` passes in silence)."""
    sock.settimeout(timeout)
    answer = b""
    try:
        while data := sock.recv(65536):
            answer += data
    except (TimeoutError, ConnectionResetError):
        pass
    return answer
