"""A NUL (U+0000) in a string a client sends is 400 INVALID_FIELD naming it, before any SQL, on every backend."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import bearer, login

SELF, ADMIN = "+8613800138000", "+8613700137000"


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


@pytest.fixture
def tokens(client, make_user):
    make_user(SELF)
    make_user(ADMIN, role="admin")
    return {"self": login(client, SELF)["token"], "admin": login(client, ADMIN)["token"]}


def invalid_field(response) -> str:
    body = response.get_json()
    assert (response.status_code, body["status"]) == (400, "INVALID_FIELD"), body
    return body["field"]


def test_a_nul_in_a_json_string_is_invalid_field_naming_it(client, tokens):
    response = client.patch("/api/users/me", json={"nickname": "a\u0000b"}, headers=bearer(tokens["self"]))
    assert invalid_field(response) == "nickname"
    assert client.get("/api/users/me", headers=bearer(tokens["self"])).get_json()["data"]["nickname"] != "a\u0000b"


def test_a_nul_in_a_public_operation_s_body_is_invalid_field(client):
    response = client.post("/api/auth/login", json={"account": "13800138000\u0000", "password": "x" * 8})
    assert invalid_field(response) == "account"


def test_a_nul_in_a_query_string_is_invalid_field_naming_it(client, tokens):
    response = client.get("/api/users/?q=%00", headers=bearer(tokens["admin"]))
    assert invalid_field(response) == "q"
