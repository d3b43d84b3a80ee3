"""Passwords a guesser tries early, which zxcvbn alone scored 2 or more (attack-16, finding 4): the account's phone
written with separators, its nickname with a suffix or twice, the parts of its email, and the common passwords of
mainland Chinese users. Each is refused on register (``password``) and on a change (``new_password``); ordinary
passphrases are not, and the check stays fast when the password has two forms to score."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import bearer, login, send_sms_code
from tests.support import deep_merge, timed

PHONE, EMAIL, NICKNAME = "+8613812345678", "zhang.wei@example.com", "zhangwei"
PASSWORD = "violet harbour kestrel 9"  # the account's own, in the change tests

FOUND = [  # the outside tester's examples, for the account above
    "138-1234-5678", "138 1234 5678", "+86 138 1234 5678",
    "zhangwei123!", "Zhangwei@2024", "zhangwei zhangwei",
    "wei.zhang@example.com", "example.com12",
    "woaini1314", "woaini520",
    "abcd1234!@#$", "19900101zw",
]
COMMON_ZH = ["5201314520", "aini1314", "iloveyou1314", "qq123456", "a123456789", "1qaz2wsx", "zxcvbnm123",
             "147258369", "woaiwojia"]
PASSPHRASES = [
    "correct horse battery", "another strong passphrase 42", "a quite different passphrase 7",
    "a brand new secret phrase", "purple elephant dances 7", "my cat likes green tea", "zebra-quartz-lantern 77",
    "Mixed Case, trailing space ", "zhangwei loves ramen at midnight", "Wo de mima hen anquan", "我的密码很安全123",
]


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(deep_merge(accounts_settings, {"mail": {"backend": "console"}}))


def register(client, app, password):
    code = send_sms_code(client, app, PHONE, "register")
    return client.post("/api/auth/register", json={"phone": PHONE, "email": EMAIL, "nickname": NICKNAME,
                                                   "password": password, "sms_code": code})


def signed_in(client, app) -> dict:
    assert register(client, app, PASSWORD).status_code == 201
    return bearer(login(client, PHONE, PASSWORD)["token"])


def change(client, headers, new_password):
    return client.put("/api/auth/password", json={"old_password": PASSWORD, "new_password": new_password},
                      headers=headers)


def assert_refused(response, field, password):
    body = response.get_json()
    assert (response.status_code, body["status"], body["field"]) == (400, "INVALID_FIELD", field)
    assert body["message"].startswith(f"{field} is too easy to guess.")
    assert password not in response.get_data(as_text=True)


@pytest.mark.parametrize("password", FOUND + COMMON_ZH)
def test_register_refuses_a_password_a_guesser_tries_early(app, client, password):
    assert_refused(register(client, app, password), "password", password)


@pytest.mark.parametrize("password", FOUND + COMMON_ZH)
def test_a_change_refuses_a_password_a_guesser_tries_early(app, client, password):
    headers = signed_in(client, app)
    assert_refused(change(client, headers, password), "new_password", password)
    login(client, PHONE, PASSWORD)  # unchanged


@pytest.mark.parametrize("password", PASSPHRASES)
def test_register_accepts_a_passphrase(app, client, password):
    assert register(client, app, password).status_code == 201


@pytest.mark.parametrize("password", PASSPHRASES)
def test_a_change_accepts_a_passphrase(app, client, password):
    headers = signed_in(client, app)
    assert change(client, headers, password).status_code == 200
    login(client, PHONE, password)


@pytest.mark.parametrize(("password", "reason"), [
    ("138-1234-5678", "close to the account's phone number, email or nickname"),
    ("Zhangwei@2024", "close to the account's phone number, email or nickname"),
    ("woaini1314", "common password"),
])
def test_the_message_says_what_makes_it_guessable(app, client, password, reason):
    assert reason in register(client, app, password).get_json()["message"]


def test_a_password_with_two_forms_that_would_keep_zxcvbn_busy_for_seconds_is_checked_at_once(app, client):
    """Every l33t character, separators, capitals and the nickname: both the password and its reduced form are
    scored, and zxcvbn on either whole takes seconds; on the prefixes, which share one bound, milliseconds."""
    crafted = ("4@8({[<369!|170$5+%2" + " zhangwei qZ" * 12)[:128]
    code = send_sms_code(client, app, PHONE, "register")
    response, seconds = timed(client.post, "/api/auth/register", json={
        "phone": PHONE, "email": EMAIL, "nickname": NICKNAME, "password": crafted, "sms_code": code})
    assert (response.status_code, seconds < 2) == (201, True)
