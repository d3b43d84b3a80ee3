"""/metrics: off by default, protected by a token when one is set, requests counted by route pattern and status,
and one count across the processes of a forked server."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.accounts import PASSWORD, bearer, login

METRICS_ON = {"metrics": {"enabled": True}}


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def test_metrics_are_off_by_default(client):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["code"] == 404


def test_requests_are_counted_by_route_pattern_method_and_status(make_app):
    client = make_app(METRICS_ON).test_client()
    before = client.get("/metrics").text
    for user_id in (1, 2, 3):
        assert client.get(f"/api/users/{user_id}").status_code == 401
    assert client.get("/api/health/live").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    after = client.get("/metrics")
    assert after.status_code == 200 and after.content_type.startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return samples(after.text, name, **labels) - samples(before, name, **labels)

    route = "/api/users/<int:user_id>"
    assert delta("http_requests_total", endpoint=route, method="GET", status="401") == 3
    assert delta("http_requests_total", endpoint="/api/health/live", status="200") == 1
    assert delta("http_requests_total", endpoint="unmatched", status="404") == 1
    assert delta("http_request_duration_seconds_count", endpoint=route) == 3
    assert "/api/users/1" not in after.text  # raw paths never become series


def test_a_metrics_token_is_required_when_set(make_app):
    client = make_app({"metrics": {"enabled": True, "token": "scrape-secret"}}).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["code"] == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


def test_a_signed_in_request_is_counted_under_its_route(make_app, accounts_settings):
    app = make_app({**accounts_settings, **METRICS_ON})
    client = app.test_client()
    from app.services.users import create_user

    with app.app_context():
        create_user("13800138123", PASSWORD, "metrics", None)
    token = login(client, "13800138123")["token"]
    before = client.get("/metrics").text
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 200
    after = client.get("/metrics").text
    assert samples(after, "http_requests_total", endpoint="/api/users/me", status="200") \
        - samples(before, "http_requests_total", endpoint="/api/users/me", status="200") == 1


@pytest.mark.e2e
def test_forked_processes_add_up_into_one_count(live_server, real_redis_settings, tmp_path):
    """Each scrape reaches one child; each must report what both children served."""
    server = live_server("--processes", "2", env={"REDIS_URL": real_redis_settings["redis"]["url"],
                                                  "APP_METRICS__ENABLED": "true",
                                                  "APP_METRICS__DIRECTORY": str(tmp_path / "metrics")})
    def served_so_far() -> float:
        with requests.Session() as session:  # a new connection: any child may answer
            text = session.get(f"{server.url}/metrics", timeout=5).text
        return samples(text, "http_requests_total", endpoint="/api/health/live", status="200")

    before, served = served_so_far(), 60  # the start-up check's requests
    for _ in range(served):
        with requests.Session() as session:  # a new connection each time, so both children get some
            response = session.get(f"{server.url}/api/health/live", timeout=5)
            assert response.status_code == 200
    assert [served_so_far() for _ in range(6)] == [before + served] * 6
    pids = {p.name for p in (tmp_path / "metrics").iterdir()}
    assert len(pids) == 1  # one directory for the server
    files = list((tmp_path / "metrics" / pids.pop()).glob("counter_*.db"))
    assert len(files) == 2  # one file per child that served
