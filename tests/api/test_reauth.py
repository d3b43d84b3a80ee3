"""Step-up: sensitive changes (the email, TOTP on or off, new recovery codes) need the session to have proved the
password or a second factor within ``auth.reauth_window``; POST /api/auth/reauth proves it again."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from app.config import settings_of
from app.services.users import create_user
from tests.fixtures.accounts import PASSWORD, bearer, enable_totp, login
from tests.support import deep_merge, wait_until

PHONE, ADMIN = "+8613800138000", "+8613700137000"
WINDOW = 1  # seconds: auth.reauth_window
TOTP_WINDOW = 2  # for users who turn TOTP on first (login, start and confirm must fit in it)
_emails = itertools.count()


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(deep_merge(accounts_settings, {"auth": {"reauth_window": WINDOW}}))


def new_email() -> str:
    return f"new{next(_emails)}@example.com"


def change_email(client, token, email=None, path="/api/users/me"):
    return client.patch(path, json={"email": email or new_email()}, headers=bearer(token))


def reauth(client, token, **body):
    return client.post("/api/auth/reauth", json=body, headers=bearer(token))


def until_reauth_required(send: Callable) -> list:
    """Send ``send()`` until it answers 401 (the window passed); every answer, the last one that 401."""
    answers: list = []

    def stale():
        answers.append(send())
        return answers[-1].status_code == 401

    wait_until(stale, timeout=WINDOW + TOTP_WINDOW + 10, interval=0.1)
    return answers


def assert_reauth_required(response):
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["status"] == "REAUTH_REQUIRED"
    assert response.headers.get("WWW-Authenticate")


def assert_invalid(response, field):
    assert (response.status_code, response.get_json()["status"], response.get_json()["field"]) == (
        400, "INVALID_FIELD", field), response.get_json()


# --- the email ---------------------------------------------------------------------------------------------


def test_a_login_makes_the_session_recent(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    response = change_email(client, token, "Fresh@Example.com")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["email"] == "fresh@example.com"


def test_changing_the_email_needs_a_recent_auth_but_other_changes_do_not(client, make_user):
    make_user(PHONE, email="me@example.com")
    token = login(client, PHONE)["token"]

    answers = until_reauth_required(lambda: change_email(client, token))
    assert answers[0].status_code == 200  # while the login was recent
    assert_reauth_required(answers[-1])
    email = answers[-2].get_json()["data"]["email"]  # the last change made; the refused one changed nothing
    assert client.get("/api/users/me", headers=bearer(token)).get_json()["data"]["email"] == email

    renamed = client.patch("/api/users/me", json={"nickname": "renamed"}, headers=bearer(token))
    assert (renamed.status_code, renamed.get_json()["data"]["nickname"]) == (200, "renamed")
    same = client.patch("/api/users/me", json={"email": email.upper(), "nickname": "again"},
                        headers=bearer(token))
    assert (same.status_code, same.get_json()["data"]["email"]) == (200, email)


def test_reauth_with_the_password_makes_the_session_recent_again(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    until_reauth_required(lambda: change_email(client, token))

    response = reauth(client, token, password=PASSWORD)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == {"reauth_expires_in": WINDOW}
    changed = change_email(client, token, "after-reauth@example.com")
    assert (changed.status_code, changed.get_json()["data"]["email"]) == (200, "after-reauth@example.com")


def test_reauth_of_one_session_leaves_the_others_stale(client, make_user):
    make_user(PHONE)
    other, token = login(client, PHONE)["token"], login(client, PHONE)["token"]
    until_reauth_required(lambda: change_email(client, other))
    assert reauth(client, token, password=PASSWORD).status_code == 200
    assert_reauth_required(change_email(client, other))


def test_a_refresh_does_not_make_the_session_recent(client, make_user):
    make_user(PHONE)
    pair = login(client, PHONE)
    until_reauth_required(lambda: change_email(client, pair["token"]))
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    assert_reauth_required(change_email(client, refreshed.get_json()["data"]["token"]))


def test_wrong_passwords_are_400_and_count_like_failed_logins(app, client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    for _ in range(settings_of(app).auth.max_failures_per_account):
        assert_invalid(reauth(client, token, password="not my password"), "password")

    refused = reauth(client, token, password=PASSWORD)  # even the right one, until the window of failures ends
    assert refused.status_code == 429, refused.get_json()
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.post("/api/auth/login", json={"account": PHONE, "password": PASSWORD}).status_code == 429
    events = client.get("/api/auth/events", headers=bearer(token)).get_json()["data"]["items"]
    failed = [e for e in events if e["type"] == "login_failed"]
    assert len(failed) == settings_of(app).auth.max_failures_per_account and failed[0]["session_id"]


@pytest.mark.parametrize("body", [{}, {"password": PASSWORD, "code": "123456"}], ids=["neither", "both"])
def test_reauth_takes_exactly_one_of_password_or_code(client, make_user, body):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    response = reauth(client, token, **body)
    assert response.status_code == 400, response.get_json()


def test_reauth_needs_a_session(client):
    response = client.post("/api/auth/reauth", json={"password": PASSWORD})
    assert response.status_code == 401


def test_an_admin_changing_a_users_email_needs_the_admins_recent_auth(client, make_user):
    user_id, _ = make_user(PHONE), make_user(ADMIN, role="admin")
    admin = login(client, ADMIN)["token"]
    path = f"/api/users/{user_id}"

    answers = until_reauth_required(lambda: change_email(client, admin, path=path))
    assert answers[0].status_code == 200
    assert_reauth_required(answers[-1])
    assert login(client, PHONE)  # the user's own fresh login is no proof of the admin's
    assert_reauth_required(change_email(client, admin, path=path))
    renamed = client.patch(path, json={"nickname": "by admin"}, headers=bearer(admin))
    assert renamed.status_code == 200

    assert reauth(client, admin, password=PASSWORD).status_code == 200
    changed = change_email(client, admin, "set-by-admin@example.com", path=path)
    assert (changed.status_code, changed.get_json()["data"]["email"]) == (200, "set-by-admin@example.com")


# --- TOTP ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "while_recent"), [
    ("post", "/api/auth/mfa/totp", 200),  # enrolment starts
    ("delete", "/api/auth/mfa/totp", 404),  # TOTP is not on
    ("post", "/api/auth/mfa/recovery-codes", 409),  # TOTP is off
])
def test_totp_changes_need_a_recent_auth(client, make_user, method, path, while_recent):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    answers = until_reauth_required(lambda: getattr(client, method)(path, headers=bearer(token)))
    assert answers[0].status_code == while_recent, answers[0].get_json()
    assert_reauth_required(answers[-1])


@pytest.fixture
def totp_user(make_app, accounts_settings):
    """A client of an app with a TOTP_WINDOW reauth window, a session of PHONE with TOTP on, and its
    authenticator."""
    app = make_app(deep_merge(accounts_settings, {"auth": {"reauth_window": TOTP_WINDOW}}))
    client = app.test_client()
    with app.app_context():
        create_user(PHONE, PASSWORD, "n")
    token = login(client, PHONE)["token"]
    authenticator, _ = enable_totp(client, token)
    return client, token, authenticator


def test_with_totp_on_a_stale_session_may_not_change_it_until_a_code_proves_it_again(totp_user):
    client, token, authenticator = totp_user
    answers = until_reauth_required(lambda: client.post("/api/auth/mfa/recovery-codes", headers=bearer(token)))
    assert answers[0].status_code == 200  # right after login and enrolment
    assert_reauth_required(answers[-1])
    assert_reauth_required(client.delete("/api/auth/mfa/totp", headers=bearer(token)))

    response = reauth(client, token, code=authenticator.code())
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == {"reauth_expires_in": TOTP_WINDOW}
    renewed = client.post("/api/auth/mfa/recovery-codes", headers=bearer(token))
    assert (renewed.status_code, len(renewed.get_json()["data"]["recovery_codes"])) == (200, 10)
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 204


def test_with_totp_on_the_password_alone_may_not_turn_it_off_or_renew_the_codes(totp_user):
    """A stolen session and password must not be enough to remove the second factor: while TOTP is on, these
    two need a recent code, not a recent password."""
    client, token, authenticator = totp_user
    until_reauth_required(lambda: client.post("/api/auth/mfa/recovery-codes", headers=bearer(token)))
    assert reauth(client, token, password=PASSWORD).status_code == 200
    assert change_email(client, token).status_code == 200  # the password is recent: other changes may go
    for refused in (client.delete("/api/auth/mfa/totp", headers=bearer(token)),
                    client.post("/api/auth/mfa/recovery-codes", headers=bearer(token))):
        assert_reauth_required(refused)
        assert "code" in refused.get_json()["message"]
    assert reauth(client, token, code=authenticator.code()).status_code == 200
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 204


def test_a_wrong_totp_code_is_400_on_code(totp_user):
    client, token, authenticator = totp_user
    assert_invalid(reauth(client, token, code=authenticator.wrong()), "code")


def test_a_code_is_400_on_code_for_a_user_without_totp(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    assert_invalid(reauth(client, token, code="123456"), "code")


def test_a_login_with_the_second_factor_makes_the_session_recent(totp_user):
    client, _, authenticator = totp_user
    ticket = login(client, PHONE)["mfa_ticket"]
    signed_in = client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": authenticator.code()})
    assert signed_in.status_code == 200, signed_in.get_json()
    token = signed_in.get_json()["data"]["token"]
    assert change_email(client, token).status_code == 200


def test_reauth_keeps_the_sessions_tokens(client, make_user):
    """ASVS 7.2.4, a documented deviation: reauth answers no token (the contract's answer is the window only), so
    the session keeps its tokens; a login, /auth/login/mfa and a refresh always issue new ones."""
    make_user(PHONE)
    pair = login(client, PHONE)
    answer = reauth(client, pair["token"], password=PASSWORD)
    assert answer.status_code == 200 and set(answer.get_json()["data"]) == {"reauth_expires_in"}
    assert client.get("/api/users/me", headers=bearer(pair["token"])).status_code == 200
    assert client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 200
