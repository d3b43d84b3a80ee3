"""supervisord.ini: supervisord starts the API processes, supervisorctl sees them, restarts a killed one."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import PROJECT_DIR, wait_until

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def free_port_prefix() -> str:
    """Three digits P such that ports P00 and P01 are both free (the file's ports are "50%(process_num)02d")."""
    for _ in range(50):
        prefix = str(random.randint(200, 600))
        try:
            for port in (int(prefix + "00"), int(prefix + "01")):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return prefix
    raise AssertionError("no free port pair")


@pytest.fixture
def supervisor(server_env, real_redis_url, tmp_path):
    """The real supervisord.ini with only its instance directory, interpreter and base port changed."""
    instance = tmp_path / "instance"
    (instance / "logs").mkdir(parents=True)
    prefix = free_port_prefix()
    config = (PROJECT_DIR / "supervisord.ini").read_text()
    config = (config.replace("%(here)s/instance", str(instance))
              .replace("%(here)s/.venv/bin/python", sys.executable)
              .replace("%(here)s", str(PROJECT_DIR))
              .replace("--port 50%(process_num)02d", f"--port {prefix}%(process_num)02d"))
    path = tmp_path / "supervisord.ini"
    path.write_text(config)
    env = {**server_env, "REDIS_URL": real_redis_url}

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(path), *args], env=env,
                              capture_output=True, text=True, timeout=30)

    subprocess.run([str(BIN / "supervisord"), "-c", str(path)], env=env, check=True, timeout=30)
    pidfile = instance / "supervisord.pid"
    wait_until(pidfile.exists, timeout=10)
    supervisord_pid = int(pidfile.read_text())
    urls = [f"http://127.0.0.1:{prefix}0{n}/api/health" for n in (0, 1)]
    yield ctl, urls
    ctl("shutdown")
    wait_until(lambda: not Path(f"/proc/{supervisord_pid}").exists(), timeout=30)


def all_running(ctl) -> bool:
    status = ctl("status")
    return status.returncode == 0 and status.stdout.count("RUNNING") == 2


def test_supervisord_runs_every_api_process(supervisor):
    ctl, urls = supervisor
    wait_until(lambda: all_running(ctl), timeout=30)
    for url in urls:
        wait_until(lambda url=url: requests.get(url, timeout=2).status_code == 200, timeout=20)


def test_a_killed_process_is_restarted(supervisor):
    ctl, urls = supervisor
    wait_until(lambda: all_running(ctl), timeout=30)
    pid = int(ctl("pid", "api:api-0").stdout.strip())
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: ctl("pid", "api:api-0").stdout.strip() not in ("0", str(pid)), timeout=15)
    wait_until(lambda: requests.get(urls[0], timeout=2).status_code == 200, timeout=20)
