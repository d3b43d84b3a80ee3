"""app.public_url: absolute URLs never come from the client's Host header, and production refuses other hosts."""

from __future__ import annotations

import io

import pytest
import qiniu

from tests.fixtures.accounts import bearer, login
from tests.support import SECRET, deep_merge

PHONE = "+8613800138000"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 300
PUBLIC = "https://api.example.com"
EXTERNAL = {"REMOTE_ADDR": "203.0.113.7"}


def upload(client, token, **kwargs) -> dict:
    response = client.post("/api/files/", data={"file": (io.BytesIO(PNG), "p.png")}, headers=bearer(token),
                           content_type="multipart/form-data", **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def test_file_urls_are_built_from_public_url_not_from_the_host_header(make_app, accounts_settings, make_user):
    app = make_app(deep_merge(accounts_settings, {"app": {"public_url": PUBLIC + "/"}}))
    client = app.test_client()
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    file_id = upload(client, token)["id"]
    response = client.get(f"/api/files/{file_id}", headers={**bearer(token), "Host": "evil.example"})
    assert response.get_json()["data"]["url"] == f"{PUBLIC}/api/files/{file_id}/content"


def test_without_public_url_development_uses_the_request_host(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    file_id = upload(client, token)["id"]
    response = client.get(f"/api/files/{file_id}", headers={**bearer(token), "Host": "dev.local:5000"})
    assert response.get_json()["data"]["url"] == f"http://dev.local:5000/api/files/{file_id}/content"


def test_the_qiniu_callback_url_defaults_to_public_url(make_app, accounts_settings, make_user):
    qiniu_keys = {"access_key": "ak", "secret_key": "sk", "bucket_name": "b"}
    app = make_app(deep_merge(accounts_settings, {"app": {"public_url": PUBLIC}, "qiniu": qiniu_keys}))
    client = app.test_client()
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    response = client.get("/api/files/upload-token?filename=a.png", headers={**bearer(token), "Host": "evil.example"})
    assert response.status_code == 200, response.get_json()
    _, _, policy = qiniu.Auth.up_token_decode(response.get_json()["data"]["token"])
    assert policy["callbackUrl"] == f"{PUBLIC}/api/files/qiniu/callback"


# --- production: the Host must be public_url's --------------------------------------------------------------


@pytest.fixture
def production(make_app, real_redis_settings):
    """A production app (as production refuses memory://, on the real Redis under this test's prefix)."""
    return make_app(deep_merge(real_redis_settings, {
        "app": {"env": "production", "secret_key": SECRET, "public_url": PUBLIC},
        "mail": {"backend": "smtp"}, "sms": {"gateway": "file"},
    }))


@pytest.mark.parametrize("host", ["evil.example", "api.example.com.evil.example", "localhost", "127.0.0.1:5000"])
def test_production_refuses_a_request_for_another_host(production, host):
    response = production.test_client().get("/api/users/me", headers={"Host": host}, environ_base=EXTERNAL)
    assert response.status_code == 400
    body = response.get_json()
    assert (body["code"], body["status"]) == (400, "BAD_REQUEST") and body["request_id"]


def test_production_refuses_another_host_on_unknown_routes_too(production):
    response = production.test_client().get("/api/nope", headers={"Host": "evil.example"})
    assert (response.status_code, response.get_json()["status"]) == (400, "BAD_REQUEST")


@pytest.mark.parametrize("host", ["api.example.com", "API.example.com:443", "api.example.com:8443"])
def test_production_serves_the_public_host(production, host):
    response = production.test_client().get("/api/users/me", headers={"Host": host}, environ_base=EXTERNAL)
    assert response.status_code == 401  # past the host check: no token


@pytest.mark.parametrize("path", ["/api/health/live", "/api/health"])
@pytest.mark.parametrize("host", ["127.0.0.1:5000", "localhost:5001", "10.0.0.5:5000"])
def test_production_probes_answer_whatever_the_host(production, path, host):
    """Supervisor, fab deploy's healthcheck and load balancers call the processes by address."""
    response = production.test_client().get(path, headers={"Host": host})
    assert response.status_code == 200, response.get_json()


def test_production_behind_a_proxy_checks_the_forwarded_host(make_app, real_redis_settings):
    app = make_app(deep_merge(real_redis_settings, {
        "app": {"env": "production", "secret_key": SECRET, "public_url": PUBLIC, "trusted_proxies": 1},
        "mail": {"backend": "smtp"}, "sms": {"gateway": "file"},
    }))
    client = app.test_client()
    good = {"Host": "127.0.0.1:5000", "X-Forwarded-Host": "api.example.com", "X-Forwarded-For": "203.0.113.7"}
    assert client.get("/api/users/me", headers=good).status_code == 401
    evil = {**good, "X-Forwarded-Host": "evil.example"}
    assert client.get("/api/users/me", headers=evil).status_code == 400


def test_every_operation_but_the_probes_documents_the_400_of_another_host(client):
    spec = client.get("/api/swagger.json").get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            documented = "400" in operation["responses"]
            assert documented is not path.startswith("/health"), f"{method.upper()} {path}"


# --- redirects and the port ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "location"), [("/api", "/api/"), ("/api?x=1", "/api/?x=1")])
def test_a_routing_redirect_is_relative_whatever_the_host_header(client, path, location):
    response = client.get(path, headers={"Host": "127.0.0.1:9999"})
    assert response.status_code == 308
    assert response.headers["Location"] == location
    assert response.data == b"" and "html" not in response.headers.get("Content-Type", "")


@pytest.mark.parametrize(("public_url", "host", "status"), [
    ("http://127.0.0.1:8000", "127.0.0.1:9999", 400),
    ("http://127.0.0.1:8000", "127.0.0.1", 400),
    ("http://127.0.0.1:8000", "127.0.0.1:8000", 401),
    ("https://api.example.com:8443", "api.example.com", 400),
    ("https://api.example.com:8443", "api.example.com:8443", 401),
    ("https://api.example.com:443", "api.example.com", 401),
    ("http://api.example.com", "api.example.com:80", 401),
])
def test_production_checks_the_port_when_public_url_names_one(make_app, real_redis_settings, public_url, host,
                                                              status):
    app = make_app(deep_merge(real_redis_settings, {
        "app": {"env": "production", "secret_key": SECRET, "public_url": public_url}, "mail": {"backend": "smtp"},
        "sms": {"gateway": "file"},
    }))
    response = app.test_client().get("/api/users/me", headers={"Host": host}, environ_base=EXTERNAL)
    assert response.status_code == status


def test_a_forwarded_prefix_never_reaches_the_specs(make_app):
    """Both specs are built once per process from the first request: a client's X-Forwarded-Prefix, which a trusted
    proxy passes along, must not point every later reader (and their tokens) at another host."""
    client = make_app({"app": {"trusted_proxies": 1}}).test_client()
    poisoned = {"X-Forwarded-Prefix": "//evil.example", "X-Forwarded-For": "203.0.113.7"}
    assert client.get("/api/openapi.json", headers=poisoned).get_json()["servers"] == [{"url": "/api"}]
    assert client.get("/api/swagger.json", headers=poisoned).get_json()["basePath"] == "/api"
