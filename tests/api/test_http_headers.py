"""HTTP-level headers: WWW-Authenticate on every 401, and the security headers on every answer of every route."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import pytest

from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge

PHONE, ADMIN = "+8613800138000", "+8613700137000"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
STATIC_DOCS = "restx_doc.static"  # flask-restx's Swagger UI assets: public files, cacheable


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(deep_merge(accounts_settings, {"metrics": {"enabled": True, "token": "scrape-secret"}}))


def assert_challenge(response) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer realm="), dict(response.headers)


# --- 401 carries WWW-Authenticate (RFC 9110 15.5.2) -----------------------------------------------------------


def test_a_request_without_a_token_is_401_with_a_challenge(client):
    assert_challenge(client.get("/api/users/me"))


@pytest.mark.parametrize("headers", [{"token": "not-a-token"}, {"Authorization": "Bearer not-a-token"}])
def test_a_request_with_an_unknown_token_is_401_with_a_challenge(client, headers):
    assert_challenge(client.get("/api/users/me", headers=headers))


def test_login_with_wrong_credentials_is_401_with_a_challenge(client, make_user):
    make_user(PHONE)
    assert_challenge(client.post("/api/auth/login", json={"account": PHONE, "password": "not the password"}))
    assert_challenge(client.post("/api/auth/login", json={"account": "+8613900139000", "password": "whatever1"}))


def test_a_logged_out_token_is_401_with_a_challenge(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 200
    assert_challenge(client.get("/api/users/me", headers=bearer(token)))


def test_an_unknown_refresh_token_is_401_with_a_challenge(client):
    assert_challenge(client.post("/api/auth/refresh", json={"refresh_token": "not-a-refresh-token"}))


def test_a_wrong_metrics_token_is_401_with_a_challenge(client):
    assert_challenge(client.get("/metrics"))
    assert_challenge(client.get("/metrics", headers={"Authorization": "Bearer wrong"}))


# --- security headers on every answer ---------------------------------------------------------------------


def assert_security_headers(response, what: str, endpoint: str | None = None) -> None:
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), what
    if endpoint != STATIC_DOCS:
        assert headers.get("Cache-Control") == "no-store", (what, headers.get("Cache-Control"))


def walk(app, client, headers: dict[str, str]) -> list[str]:
    """Every method of every route of the app, with placeholder arguments; what was asked."""
    asked = []
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        path = adapter.build(rule.endpoint, {name: 1 for name in rule.arguments}, force_external=False)
        for method in sorted(rule.methods or ()):
            body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            response = client.open(path, method=method, headers=headers, **body)
            what = f"{method} {path} -> {response.status_code}"
            assert_security_headers(response, what, rule.endpoint)
            asked.append(what)
    return asked


def test_every_route_answers_with_the_security_headers_without_a_token(app, client):
    asked = walk(app, client, {})
    assert any(" -> 401" in a for a in asked) and any(" -> 200" in a for a in asked)


def test_every_route_answers_with_the_security_headers_for_an_admin(app, client, make_user):
    make_user(ADMIN, role="admin")
    asked = walk(app, client, bearer(login(client, ADMIN)["token"]))
    assert any(" -> 400" in a for a in asked) and any(" -> 404" in a for a in asked)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/nope"), ("GET", "/nope"), ("DELETE", "/api/health"), ("POST", "/api/health/live"),
])
def test_unknown_routes_and_wrong_methods_carry_the_security_headers(client, method, path):
    response = client.open(path, method=method)
    assert response.status_code in (404, 405)
    assert_security_headers(response, f"{method} {path}")


def test_answers_that_carry_tokens_are_not_stored(client, make_user):
    make_user(PHONE)
    response = client.post("/api/auth/login", json={"account": PHONE, "password": "correct horse battery"})
    assert response.status_code == 200 and response.get_json()["data"]["token"]
    assert_security_headers(response, "login")
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": response.get_json()["data"]["refresh_token"]})
    assert refreshed.status_code == 200
    assert_security_headers(refreshed, "refresh")


def test_file_downloads_carry_the_security_headers(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    uploaded = client.post("/api/files/", data={"file": (io.BytesIO(PNG), "p.png")}, headers=bearer(token),
                           content_type="multipart/form-data")
    url = f"/api/files/{uploaded.get_json()['data']['id']}/content"
    whole = client.get(url, headers=bearer(token))
    assert whole.status_code == 200 and whole.data == PNG
    part = client.get(url, headers={**bearer(token), "Range": "bytes=0-3"})
    assert part.status_code == 206
    beyond = client.get(url, headers={**bearer(token), "Range": f"bytes={len(PNG) + 10}-"})
    assert beyond.status_code == 416
    not_modified = client.get(url, headers={**bearer(token), "If-None-Match": whole.headers["ETag"]})
    assert not_modified.status_code == 304
    for response in (whole, part, beyond, not_modified):
        assert_security_headers(response, f"download {response.status_code}")


def test_swagger_ui_may_not_be_framed_and_runs_only_its_own_scripts(client):
    page = client.get("/api/")
    assert page.status_code == 200 and "swagger-ui" in page.get_data(as_text=True)
    assert_security_headers(page, "Swagger UI")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'self'"
    sources = policy["script-src"].split()
    assert "'unsafe-inline'" not in sources
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page.get_data(as_text=True), re.S)
    assert inline
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in sources
    asset = client.get("/swaggerui/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert asset.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize(("path", "code"), [("/api/probe/boom", 500), ("/api/probe/limited", 429),
                                            ("/api/probe/conflict", 409)])
def test_errors_from_the_app_and_unhandled_ones_carry_the_security_headers(make_app, path, code):
    from probe_api import PROBE

    response = make_app(extra_namespaces=[PROBE]).test_client().get(path)
    assert response.status_code == code
    assert_security_headers(response, path)
