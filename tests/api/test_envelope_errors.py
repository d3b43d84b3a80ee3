"""Every framework error, and every error raised in code, comes out as the contract's envelope."""

from __future__ import annotations

import pytest
from probe_api import PROBE

from tests.support import free_port, timed


@pytest.fixture
def probe_client(make_app):
    return make_app(extra_namespaces=[PROBE]).test_client()


def assert_error(response, code: int, status: str, field=None) -> dict:
    body = response.get_json()
    assert response.status_code == code, body
    assert body["code"] == code
    assert body["status"] == status
    assert body["field"] == field
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_unknown_route_under_api_is_json_404(client):
    assert_error(client.get("/api/no/such/thing"), 404, "NOT_FOUND")


def test_unknown_route_outside_api_is_json_404(client):
    assert_error(client.get("/favicon.ico"), 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow_header(client):
    response = client.delete("/api/health/live")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_400_bad_request(probe_client):
    response = probe_client.post("/api/probe/echo", data="{not json", content_type="application/json")
    assert_error(response, 400, "BAD_REQUEST")


def test_missing_field_is_400_naming_it(probe_client):
    response = probe_client.post("/api/probe/echo", json={"name": "x"})
    assert_error(response, 400, "INVALID_FIELD", field="age")


def test_out_of_range_field_is_400_naming_it(probe_client):
    response = probe_client.post("/api/probe/echo", json={"name": "x", "age": -1})
    assert_error(response, 400, "INVALID_FIELD", field="age")


def test_wrong_type_field_is_400_naming_it(probe_client):
    response = probe_client.post("/api/probe/echo", json={"name": 5, "age": 3})
    assert_error(response, 400, "INVALID_FIELD", field="name")


def test_valid_body_is_enveloped(probe_client):
    response = probe_client.post("/api/probe/echo", json={"name": "小明", "age": 3})
    assert response.status_code == 200
    assert response.get_json() == {"code": 200, "status": "SUCCESS", "message": "OK",
                                   "data": {"name": "小明", "age": 3}}


def test_non_json_body_is_415(probe_client):
    response = probe_client.post("/api/probe/echo", data="name=x", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_body_over_the_limit_is_413(make_app):
    client = make_app({"files": {"max_size": 1024}}, extra_namespaces=[PROBE]).test_client()
    response = client.post("/api/probe/echo", data="x" * 200_000, content_type="application/json")
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_unhandled_exception_is_500_without_internals(probe_client, caplog):
    response = probe_client.get("/api/probe/boom")
    body = assert_error(response, 500, "SERVER_ERROR")
    assert "SELECT" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "password_hash" not in body["message"]
    assert any("unhandled exception" in r.getMessage() and r.exc_info for r in caplog.records)


def test_api_error_raised_in_code_keeps_its_field(probe_client):
    assert_error(probe_client.get("/api/probe/conflict"), 409, "CONFLICT", field="phone")


def test_too_many_requests_carries_retry_after(probe_client):
    response = probe_client.get("/api/probe/limited")
    assert_error(response, 429, "TOO_MANY_REQUESTS")
    assert response.headers["Retry-After"] == "42"


def test_redis_unreachable_is_503_within_two_seconds(make_app):
    client = make_app({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}},
                      extra_namespaces=[PROBE]).test_client()
    response, seconds = timed(client.get, "/api/probe/redis")
    assert seconds < 2
    assert_error(response, 503, "SERVICE_UNAVAILABLE")


def test_database_unreachable_is_503_within_two_seconds(make_app):
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    client = make_app({"database": {"url": dead}}, extra_namespaces=[PROBE], create_tables=False).test_client()
    response, seconds = timed(client.get, "/api/probe/database")
    assert seconds < 2
    assert_error(response, 503, "SERVICE_UNAVAILABLE")


def test_client_request_id_is_echoed(client):
    response = client.get("/api/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


def test_malformed_request_id_is_replaced(client):
    response = client.get("/api/nope", headers={"X-Request-ID": "bad id <script>"})
    generated = response.headers["X-Request-ID"]
    assert generated and " " not in generated
    assert response.get_json()["request_id"] == generated


def test_werkzeug_429_keeps_its_retry_after(make_app):
    from flask_restx import Namespace, Resource
    from werkzeug.exceptions import TooManyRequests

    from app.api.envelope import fails, public

    ns = Namespace("limited")

    @ns.route("/")
    class Limited(Resource):
        @public
        @fails(ns, 429)
        def get(self):
            raise TooManyRequests(retry_after=30)

    response = make_app(extra_namespaces=[(ns, "/limited")]).test_client().get("/api/limited/")
    assert_error(response, 429, "TOO_MANY_REQUESTS")
    assert response.headers["Retry-After"] == "30"
