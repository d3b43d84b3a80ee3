"""Passwords of any composition and length up to 128 characters are accepted and hashed whole (ASVS 6.2.5, 6.2.9):
no rule on character classes, nothing cut, only the strength score decides."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import send_sms_code

PHONE = "+8613800138000"


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


def register_and_login(client, app, password: str) -> int:
    code = send_sms_code(client, app, PHONE, "register")
    registered = client.post("/api/auth/register", json={"phone": PHONE, "password": password, "nickname": "n",
                                                         "sms_code": code})
    assert registered.status_code == 201, registered.get_json()
    return client.post("/api/auth/login", json={"account": PHONE, "password": password}).status_code


@pytest.mark.parametrize("password", [
    "all lower case words here",  # no digit, capital or symbol
    "密码是一句很长的中文短语",  # not ASCII at all
    "emoji 🐉 and\ttab and spaces",  # symbols, a tab, spaces
], ids=["lower-case-words", "chinese", "emoji-and-tab"])
def test_a_passphrase_of_any_characters_is_accepted(app, client, password):
    assert register_and_login(client, app, password) == 200


def test_a_128_character_password_is_accepted_and_hashed_whole(app, client):
    password = "the long passphrase goes on " * 4 + "x" * 16
    assert len(password) == 128
    assert register_and_login(client, app, password) == 200
    changed_at_the_end = password[:-1] + "y"  # zxcvbn scores a prefix; the hash takes every character
    assert client.post("/api/auth/login", json={"account": PHONE, "password": changed_at_the_end}).status_code == 401
    too_long = client.post("/api/auth/login", json={"account": PHONE, "password": password + "z"})
    assert (too_long.status_code, too_long.get_json()["field"]) == (400, "password")  # refused, never cut


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/auth/register", {"phone": PHONE, "nickname": "n", "sms_code": "123456", "password": "password123"},
     "sms_code"),
    ("/api/auth/password/reset", {"phone": PHONE, "sms_code": "123456", "new_password": "password123"}, "sms_code"),
    ("/api/auth/password/reset", {"email": "me@example.com", "email_code": "123456", "new_password": "password123"},
     "email_code"),
], ids=["register", "reset-by-sms", "reset-by-email"])
def test_no_password_is_scored_without_a_live_code(app, client, path, body, field):
    """Scoring a password costs CPU (up to tens of ms): without a live code to use, the answer is about the code,
    so nobody can make the server score passwords without asking for an SMS or a mail first (capped)."""
    response = client.post(path, json=body)
    assert (response.status_code, response.get_json()["field"]) == (400, field), response.get_json()
