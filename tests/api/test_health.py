"""GET /api/health (readiness) and GET /api/health/live (liveness)."""

from __future__ import annotations

import shutil
import subprocess

from app import __version__
from tests.support import free_port, service_missing, timed, wait_until

# A checkout that fab did not deploy has no release.json and runs from no releases/ directory; test_deploy.py
# checks what a deployed process says.
NOT_DEPLOYED = {"commit": None, "dirty": False, "built_at": None, "release": None}


def test_readiness_reports_database_and_redis_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "code": 200, "status": "SUCCESS", "message": "OK",
        "data": {"database": "ok", "redis": "ok", "jobs": "thread", "version": __version__,
                 "build": NOT_DEPLOYED},
    }


def test_liveness_answers_without_dependencies(make_app):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    dead_database = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    app = make_app({"redis": {"url": dead_redis}, "database": {"url": dead_database}}, create_tables=False)
    response = app.test_client().get("/api/health/live")
    assert response.status_code == 200
    assert response.get_json()["data"] == {"alive": True}


def test_readiness_names_redis_when_it_is_down(make_app):
    client = make_app({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}}).test_client()
    response, seconds = timed(client.get, "/api/health")
    assert seconds < 2
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "SERVICE_UNAVAILABLE"
    assert "redis" in body["message"]
    assert body["data"] == {"database": "ok", "redis": "down", "jobs": "thread", "version": __version__,
                            "build": NOT_DEPLOYED}


def test_readiness_names_the_database_when_it_is_down(make_app):
    dead_database = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    client = make_app({"database": {"url": dead_database}}, create_tables=False).test_client()
    response, seconds = timed(client.get, "/api/health")
    assert seconds < 2
    body = response.get_json()
    assert response.status_code == 503
    assert "database" in body["message"]
    assert body["data"]["database"] == "down"
    assert body["data"]["redis"] == "ok"


def test_readiness_recovers_when_redis_comes_back(make_app, tmp_path):
    """The same app answers 200 again once its Redis is reachable, without a restart."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        service_missing("redis-server", FileNotFoundError("not on PATH"))
    port = free_port()
    client = make_app({"redis": {"url": f"redis://127.0.0.1:{port}/0"}}).test_client()
    assert client.get("/api/health").status_code == 503
    server = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: client.get("/api/health").status_code == 200, timeout=10)
    finally:
        server.terminate()
        server.wait(5)
