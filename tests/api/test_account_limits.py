"""Brute-force and discovery limits on account flows: login locks, reset mails, password changes, register."""

from __future__ import annotations

import re

import pytest

from app.config import settings_of
from app.extensions import redis_store
from tests.fixtures.accounts import PASSWORD, bearer, login, send_sms_code
from tests.support import deep_merge, wait_until

PHONE, OTHER, EMAIL = "+8613800138000", "+8613900139000", "me@example.com"
WRONG = "wrong password"


@pytest.fixture
def limited(make_app, accounts_settings):
    """``limited(overrides)``: a client of an app with ``overrides`` whose database holds PHONE / EMAIL."""
    from app.services.users import create_user

    def factory(overrides: dict) -> tuple:
        app = make_app(deep_merge(accounts_settings, overrides))
        with app.app_context():
            create_user(PHONE, PASSWORD, "n", EMAIL)
        return app, app.test_client()

    return factory


def log_in(client, account: str, password: str = WRONG) -> int:
    return client.post("/api/auth/login", json={"account": account, "password": password}).status_code


# --- one lock per account, however it is written ------------------------------------------------------------


def test_other_spellings_of_a_locked_phone_are_locked_too(limited):
    _, client = limited({"auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    assert [log_in(client, "13800138000") for _ in range(3)] == [401, 401, 401]
    for spelling in ("+8613800138000", "+86 138 0013 8000", "138-0013-8000", "(138) 0013.8000"):
        assert log_in(client, spelling, PASSWORD) == 429, spelling


def test_other_spellings_of_a_locked_email_are_locked_too(limited):
    _, client = limited({"auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    assert [log_in(client, "me@example.com") for _ in range(3)] == [401, 401, 401]
    for spelling in ("ME@example.com", " Me@Example.COM "):
        assert log_in(client, spelling, PASSWORD) == 429, spelling


def test_an_unparseable_account_is_counted_under_a_digest_not_its_text(limited):
    app, client = limited({"auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    account = "no-such-account-" + "q" * 200
    assert [log_in(client, account) for _ in range(4)] == [401, 401, 401, 429]
    assert log_in(client, account.upper()) == 429
    with app.app_context():
        keys = list(redis_store.scan_iter(match=settings_of(app).redis.prefix + "*"))
    assert keys and not [k for k in keys if "no-such-account" in k.lower() or len(k) > 200], keys


# --- password reset mails -------------------------------------------------------------------------------------


def forgot(client, email: str):
    return client.post("/api/auth/password/forgot", json={"email": email})


@pytest.mark.parametrize("email", [EMAIL, "nobody@example.com"])
def test_reset_mails_to_one_address_are_capped_whether_or_not_it_is_known(limited, email):
    _, client = limited({"sms": {"resend_after": 0}, "auth": {"reset_mails_per_address": 2}})
    assert [forgot(client, email).status_code for _ in range(2)] == [200, 200]
    refused = forgot(client, email.upper())
    assert (refused.status_code, refused.get_json()["status"]) == (429, "TOO_MANY_REQUESTS")
    assert refused.get_json()["message"] == "This address has had its reset mails for today."
    assert 86000 < int(refused.headers["Retry-After"]) <= 86400


def test_reset_mails_asked_by_one_client_are_capped(limited):
    _, client = limited({"sms": {"resend_after": 0}, "auth": {"reset_mails_per_ip": 3}})
    answers = [forgot(client, f"user{i}@example.com") for i in range(3)] + [forgot(client, EMAIL)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert "address" in answers[-1].get_json()["message"] and int(answers[-1].headers["Retry-After"]) > 86000


def test_the_reset_mail_cap_counts_mails_sent(limited, smtp):
    port, inbox = smtp
    app, client = limited({"sms": {"resend_after": 0}, "auth": {"reset_mails_per_address": 2},
                           "mail": {"server": "127.0.0.1", "port": port, "suppress": False}})
    assert [forgot(client, EMAIL).status_code for _ in range(3)] == [200, 200, 429]
    wait_until(lambda: len(inbox.messages) == 2, timeout=10)
    app.extensions["tasks"].drain(5)
    assert len(inbox.messages) == 2


def test_asks_inside_the_resend_wait_are_ignored_and_not_counted(limited):
    _, client = limited({"auth": {"reset_mails_per_address": 2}})
    assert [forgot(client, email).status_code for email in (EMAIL, "nobody@example.com") * 4] == [200] * 8


# --- wrong old passwords ---------------------------------------------------------------------------------------


def change(client, token: str, old: str):
    return client.put("/api/auth/password", json={"old_password": old, "new_password": "a brand new secret"},
                      headers=bearer(token))


def test_wrong_old_passwords_lock_the_account_like_failed_logins(limited):
    _, client = limited({"auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    token = login(client, PHONE)["token"]
    assert [change(client, token, WRONG).status_code for _ in range(3)] == [400, 400, 400]
    refused = change(client, token, PASSWORD)
    assert refused.status_code == 429 and 800 < int(refused.headers["Retry-After"]) <= 900
    assert log_in(client, "13800138000", PASSWORD) == log_in(client, EMAIL, PASSWORD) == 429


def test_wrong_old_passwords_count_toward_the_clients_failures(limited):
    _, client = limited({"auth": {"max_failures_per_account": 100, "max_failures_per_ip": 3}})
    token = login(client, PHONE)["token"]
    assert [change(client, token, WRONG).status_code for _ in range(3)] == [400, 400, 400]
    assert log_in(client, OTHER) == 429


def test_the_right_old_password_clears_the_accounts_failures(limited):
    _, client = limited({"auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    token = login(client, PHONE)["token"]
    assert [change(client, token, WRONG).status_code for _ in range(2)] == [400, 400]
    assert change(client, token, PASSWORD).status_code == 200
    assert [log_in(client, PHONE) for _ in range(2)] == [401, 401]
    login(client, PHONE, "a brand new secret")


@pytest.mark.parametrize(("path", "method"), [("/auth/password", "put"), ("/auth/password/forgot", "post")])
def test_the_new_429_answers_are_documented(client, path, method):
    assert "429" in client.get("/api/swagger.json").get_json()["paths"][path][method]["responses"]


# --- registration tells nothing without a proof of the phone ----------------------------------------------------


def register(client, email: str, **proof):
    return client.post("/api/auth/register", json={"phone": PHONE, "password": PASSWORD, "nickname": "n",
                                                   "email": email, **proof})


@pytest.mark.parametrize("proof", [{}, {"sms_code": "123456"}, {"sms_ticket": "made-up"}])
def test_register_without_a_valid_proof_answers_the_same_for_a_taken_email(make_app, accounts_settings, proof):
    from app.services.users import create_user

    client = (app := make_app(accounts_settings)).test_client()
    with app.app_context():
        create_user(OTHER, PASSWORD, "n", "taken@example.com")
    taken, free = register(client, "taken@example.com", **proof), register(client, "free@example.com", **proof)
    assert taken.status_code == free.status_code == 400
    assert {**taken.get_json(), "request_id": ""} == {**free.get_json(), "request_id": ""}


def test_a_409_on_register_uses_up_the_sms_code(make_app, accounts_settings):
    from app.services.users import create_user

    client = (app := make_app(accounts_settings)).test_client()
    with app.app_context():
        create_user(OTHER, PASSWORD, "n", "taken@example.com")
    code = send_sms_code(client, app, PHONE, "register")
    taken = register(client, "taken@example.com", sms_code=code)
    assert (taken.status_code, taken.get_json()["field"]) == (409, "email")
    again = register(client, "free@example.com", sms_code=code)
    assert (again.status_code, again.get_json()["field"]) == (400, "sms_code")
    assert re.search("request a new one", again.get_json()["message"])


def test_a_locked_password_leaves_sms_login_and_open_sessions_alone(limited):
    """No malicious lockout (ASVS 6.1.1): guessing an account's password locks password checks only."""
    app, client = limited({"auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    token = login(client, PHONE)["token"]
    for _ in range(3):
        assert log_in(client, PHONE) == 401
    assert log_in(client, PHONE, PASSWORD) == 429
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 200
    code = send_sms_code(client, app, PHONE, "login")
    by_sms = client.post("/api/auth/login", json={"phone": PHONE, "sms_code": code})
    assert by_sms.status_code == 200 and by_sms.get_json()["data"]["token"]


def test_the_phone_and_the_email_of_one_account_share_one_count(limited):
    """Failures by phone and by email add up: five in all, not five each (found by the outside test)."""
    _, client = limited({"auth": {"max_failures_per_account": 4, "max_failures_per_ip": 100}})
    for account in (PHONE, EMAIL, "138 0013 8000", EMAIL.upper()):
        assert log_in(client, account) == 401
    assert (log_in(client, PHONE, PASSWORD), log_in(client, EMAIL, PASSWORD)) == (429, 429)
