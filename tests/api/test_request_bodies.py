"""What a request may carry: closed and bounded bodies, bounded query strings, and crafted JSON answered 400."""

from __future__ import annotations

import logging
import re

import pytest

from tests.fixtures.accounts import bearer, login
from tests.support import spec_operations

ADMIN = "+8613700137000"
UNKNOWN = "not_in_the_model"


@pytest.fixture
def admin_token(client, make_user):
    make_user(ADMIN, role="admin")
    return login(client, ADMIN)["token"]


@pytest.fixture
def spec(client):
    return client.get("/api/swagger.json").get_json()



def body_models(spec):
    """(operation, model) for every operation that takes a JSON body."""
    for path, method, operation in spec_operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "body":
                name = parameter["schema"]["$ref"].rsplit("/", 1)[-1]
                yield f"{method.upper()} {path}", spec["definitions"][name]


def plausible(schema: dict):
    """A value that looks valid for a property's schema."""
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "x" * max(1, schema.get("minLength", 1)), "integer": 1, "boolean": True,
            "number": 1}.get(schema.get("type"), "x")


def test_every_body_model_is_closed_and_every_string_bounded_in_the_spec(spec):
    models = list(body_models(spec))
    assert len(models) >= 10
    for where, model in models:
        assert model.get("additionalProperties") is False, f"{where} accepts unknown properties"
        for name, prop in model["properties"].items():
            if prop.get("type") == "string":
                assert isinstance(prop.get("maxLength"), int), f"{where}: {name} has no maxLength"


def test_every_string_query_argument_is_bounded_in_the_spec(spec):
    checked = 0
    for path, method, operation in spec_operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["in"] in ("query", "path") and parameter.get("type") == "string":
                checked += 1
                assert isinstance(parameter.get("maxLength"), int), f"{method.upper()} {path}: {parameter['name']}"
    assert checked >= 3


def test_every_body_refuses_an_unknown_property_naming_it(client, spec, admin_token):
    for where, model in body_models(spec):
        method, path = where.split(" ", 1)
        body = {name: plausible(prop) for name, prop in model["properties"].items()}
        body[UNKNOWN] = "surprise"
        url = "/api" + re.sub(r"\{[^}]+\}", "1", path)
        response = client.open(url, method=method, json=body, headers=bearer(admin_token))
        answer = response.get_json()
        assert (response.status_code, answer["status"], answer["field"]) == (400, "INVALID_FIELD", UNKNOWN), where


def test_a_user_cannot_send_role_or_is_active_to_their_own_profile(client, make_user):
    make_user("+8613800138000")
    token = login(client, "+8613800138000")["token"]
    for change in ({"role": "admin"}, {"is_active": False}):
        response = client.patch("/api/users/me", json=change, headers=bearer(token))
        assert (response.status_code, response.get_json()["field"]) == (400, next(iter(change)))
    me = client.get("/api/users/me", headers=bearer(token)).get_json()["data"]
    assert (me["role"], me["is_active"]) == ("user", True)
    assert client.get("/api/users/", headers=bearer(token)).status_code == 403


def test_a_huge_account_is_refused_before_any_work(client):
    response = client.post("/api/auth/login", json={"account": "1" * 1_000_000, "password": "x" * 10})
    assert (response.status_code, response.get_json()["field"]) == (400, "account")


@pytest.mark.parametrize(("url", "field"), [
    ("/api/users/?q=" + "x" * 10_000, "q"),
    ("/api/files/upload-token?filename=" + "a" * 10_000 + ".png", "filename"),
    ("/api/files/upload-token?filename=a.png&content_type=" + "x" * 10_000, "content_type"),
])
def test_a_huge_query_string_argument_is_400_naming_it(client, admin_token, url, field):
    response = client.get(url, headers=bearer(admin_token))
    assert (response.status_code, response.get_json()["field"]) == (400, field)


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/auth/refresh"])
def test_deeply_nested_json_is_400_bad_request(client, path):
    response = client.post(path, data="[" * 10_000 + "]" * 10_000, content_type="application/json")
    assert (response.status_code, response.get_json()["status"]) == (400, "BAD_REQUEST")


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/auth/login", '{"account": "\\ud800", "password": "long enough"}', "account"),
    ("/api/auth/refresh", '{"refresh_token": "a\\udfffb"}', "refresh_token"),
    ("/api/auth/login", '{"account": "13800138000", "password": "long enough", "x\\ud800": 1}', "x\\ud800"),
])
def test_a_lone_surrogate_is_400_naming_the_field(client, path, body, field):
    response = client.post(path, data=body, content_type="application/json")
    answer = response.get_json()
    assert (response.status_code, answer["status"], answer["field"]) == (400, "INVALID_FIELD", field)


def test_the_detail_line_of_a_body_with_a_lone_surrogate_is_logged_escaped(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    client = make_app({"log": {"file": str(logfile)}}).test_client()
    body = '{"account": "13800138000", "password": "long enough", "ignored\\ud800": "x"}'  # its name alone is logged
    client.post("/api/auth/login", data=body, content_type="application/json", headers={"X-Request-ID": "sur-1"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = logfile.read_text()
    [line] = [line for line in text.splitlines() if "app.record" in line and "[sur-1]" in line]
    assert '"ignored\\ud800": "[redacted]"' in line
    assert "Logging error" not in text


@pytest.mark.parametrize("body", [
    {"account": "13800138000", "password": "p" * 100 + "-secret-" + "p" * 100},
    {"account": "a" * 100_000, "password": "short"},
])
def test_a_refused_value_is_not_echoed(client, body):
    response = client.post("/api/auth/login", json=body)
    answer = response.get_json()
    assert response.status_code == 400 and answer["status"] == "INVALID_FIELD"
    assert "secret" not in answer["message"] and "aaaa" not in answer["message"]
    assert len(response.get_data()) < 1000
    assert "at most" in answer["message"]
