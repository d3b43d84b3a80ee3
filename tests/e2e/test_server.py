"""tornado_server.py as a real process: HTTP, HTTPS, graceful SIGTERM, several processes, refusals."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests
from conftest import PROJECT_DIR, free_port, wait_until

pytestmark = pytest.mark.e2e


def child_pids(pid: int) -> set[int]:
    children = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as file:
            children |= {int(p) for p in file.read().split()}
    return children


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def real_redis_env(real_redis_url):
    return {"REDIS_URL": real_redis_url}


def test_http_server_serves_the_api_and_swagger_ui(live_server):
    server = live_server()
    health = requests.get(f"{server.url}/api/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["data"]["database"] == "ok"  # migrated at start (auto_migrate)
    assert health.headers["X-Request-ID"]
    ui = requests.get(f"{server.url}/api/", timeout=5)
    assert ui.status_code == 200 and "swagger-ui" in ui.text
    assert f"Swagger UI: http://127.0.0.1:{server.port}/api/" in server.output()


def make_certificate(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def test_https_when_a_certificate_is_configured(live_server, tmp_path):
    certfile, keyfile = make_certificate(tmp_path)
    server = live_server(env={"APP_CERT__CERTFILE": certfile, "APP_CERT__KEYFILE": keyfile},
                         scheme="https", verify=certfile)
    response = requests.get(f"{server.url}/api/health", verify=certfile, timeout=5)
    assert response.status_code == 200
    assert f"Swagger UI: https://127.0.0.1:{server.port}/api/" in server.output()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/api/health/live", timeout=5)


def test_half_configured_certificate_is_refused(live_server, tmp_path):
    certfile, _ = make_certificate(tmp_path)
    server = live_server(env={"APP_CERT__CERTFILE": certfile}, wait=False)
    assert server.process.wait(20) == 2
    assert "set both cert.certfile and cert.keyfile" in server.output()


def test_sigterm_lets_an_in_flight_request_finish(live_server):
    server = live_server("--app", "probe_api:create_probe_app")
    result = {}

    def slow_request() -> None:
        result["response"] = requests.get(f"{server.url}/api/probe/slow?seconds=2", timeout=15)

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: "slow request started" in server.output(), timeout=5)
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: not _accepts(server.port), timeout=5)  # stopped accepting, request still running
    assert thread.is_alive()
    thread.join(15)
    assert result["response"].status_code == 200
    assert result["response"].json()["data"] == "done"
    assert server.process.wait(15) == 0


def test_sigterm_waits_for_accepted_background_tasks(live_server, tmp_path):
    done = tmp_path / "task-done"
    server = live_server("--app", "probe_api:create_probe_app")
    response = requests.post(f"{server.url}/api/probe/task?seconds=1.5&path={done}", timeout=5)
    assert response.status_code == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert done.read_text() == "done"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_several_processes_share_the_port_and_stop_together(live_server, real_redis_env):
    server = live_server("--processes", "2", env=real_redis_env)
    children = wait_until(lambda: len(child_pids(server.process.pid)) == 2 and child_pids(server.process.pid))
    for _ in range(40):
        assert requests.get(f"{server.url}/api/health", timeout=5).status_code == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert not any(alive(pid) for pid in children)


def test_a_crashed_child_is_replaced(live_server, real_redis_env):
    server = live_server("--processes", "2", env=real_redis_env)
    children = wait_until(lambda: len(child_pids(server.process.pid)) == 2 and child_pids(server.process.pid))
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(lambda: (pids := child_pids(server.process.pid)) and len(pids) == 2
                          and victim not in pids and pids, timeout=10)
    assert victim not in replaced
    assert requests.get(f"{server.url}/api/health/live", timeout=5).status_code == 200


def run_server(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_DIR / "tornado_server.py"), *args], cwd=PROJECT_DIR,
                          env=env, capture_output=True, text=True, timeout=30)


def test_several_processes_on_memory_redis_are_refused(server_env):
    result = run_server({**server_env, "REDIS_URL": "memory://"}, "--port", str(free_port()), "--processes", "2")
    assert result.returncode == 2
    assert "memory://" in result.stderr


def test_production_with_the_default_secret_is_refused(server_env):
    env = {**server_env, "APP_ENV": "production", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    del env["SECRET_KEY"]
    result = run_server(env, "--port", str(free_port()))
    assert result.returncode == 2
    assert "refusing to start in production" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_a_port_in_use_is_reported(server_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_server(server_env, "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr
