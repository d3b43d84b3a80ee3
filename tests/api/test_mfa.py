"""TOTP second factor and recovery codes through HTTP: enrolment, login with a ticket, replay, ticket limits,
recovery codes, SMS login and password reset that do not bypass it, turning it off."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest

from app.extensions import db
from app.models import RecoveryCode, User
from tests.fixtures.accounts import PASSWORD, Authenticator, bearer, enable_totp, login, send_sms_code

PHONE = "+8613800138000"
NEW_PASSWORD = "a quite different passphrase 7"


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app({**accounts_settings, "app": {"name": "Acme API"}})


@pytest.fixture
def user_id(make_user):
    return make_user(PHONE, email="me@example.com")


def password_login(client, password=PASSWORD):
    response = client.post("/api/auth/login", json={"account": PHONE, "password": password})
    assert response.status_code == 200, response.get_json()
    return response


def ticket_of(response) -> str:
    data = response.get_json()["data"]
    assert set(data) == {"mfa_required", "mfa_ticket", "expires_in"}, data
    assert data["mfa_required"] is True and data["expires_in"] == 300, data
    return str(data["mfa_ticket"])


def second_factor(client, ticket, **proof):
    return client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, **proof})


@pytest.fixture
def totp_user(client, user_id):
    """(token of the session that turned TOTP on, authenticator, recovery codes)."""
    token = login(client, PHONE)["token"]
    authenticator, codes = enable_totp(client, token)
    return token, authenticator, codes


# --- enrolment -----------------------------------------------------------------------------------------------


def test_enrolment_gives_the_secret_its_uri_and_a_qr_svg_and_is_off_until_confirmed(app, client, user_id):
    token = login(client, PHONE)["token"]
    started = client.post("/api/auth/mfa/totp", headers=bearer(token))
    assert started.status_code == 200 and started.headers["Cache-Control"] == "no-store"
    data = started.get_json()["data"]
    assert re.fullmatch(r"[A-Z2-7]{32}", data["secret"])
    parsed = pyotp.parse_uri(data["otpauth_uri"])
    assert (parsed.secret, parsed.issuer, parsed.name, parsed.digits, parsed.interval) == (
        data["secret"], "Acme API", "me@example.com", 6, 30)
    assert data["qr_svg"].startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in data["qr_svg"]
    assert client.get("/api/auth/mfa", headers=bearer(token)).get_json()["data"] == {
        "totp": False, "recovery_codes_left": 0}
    assert "token" in password_login(client).get_json()["data"]  # not on yet: tokens as before


def test_confirming_turns_it_on_gives_ten_codes_once_and_ends_the_other_sessions(app, client, user_id):
    token = login(client, PHONE)["token"]
    other = login(client, PHONE)["token"]
    started = client.post("/api/auth/mfa/totp", headers=bearer(token)).get_json()["data"]
    authenticator = Authenticator(started["secret"])
    wrong = client.post("/api/auth/mfa/totp/confirm", headers=bearer(token), json={"code": authenticator.wrong()})
    assert (wrong.status_code, wrong.get_json()["field"]) == (400, "code")
    confirmed = client.post("/api/auth/mfa/totp/confirm", headers=bearer(token), json={"code": authenticator.code()})
    assert confirmed.status_code == 200 and confirmed.headers["Cache-Control"] == "no-store"
    codes = confirmed.get_json()["data"]["recovery_codes"]
    assert len(set(codes)) == 10 and all(re.fullmatch(r"([A-Z2-9]{4}-){3}[A-Z2-9]{4}", code) for code in codes)
    assert client.get("/api/users/me", headers=bearer(other)).status_code == 401
    assert client.get("/api/auth/mfa", headers=bearer(token)).get_json()["data"] == {
        "totp": True, "recovery_codes_left": 10}
    again = client.post("/api/auth/mfa/totp", headers=bearer(token))
    assert again.status_code == 409


def test_confirm_without_an_enrolment_is_400_on_code(app, client, user_id):
    token = login(client, PHONE)["token"]
    response = client.post("/api/auth/mfa/totp/confirm", headers=bearer(token), json={"code": "123456"})
    assert (response.status_code, response.get_json()["field"]) == (400, "code")


def test_the_stored_secret_and_codes_are_not_readable_from_the_database(app, client, totp_user, user_id):
    _, authenticator, codes = totp_user
    secret = authenticator.totp.secret
    with app.app_context():
        stored = db.session.get(User, user_id).totp_secret
        hashes = [row.code_hash for row in db.session.query(RecoveryCode).filter_by(user_id=user_id)]
    assert secret not in stored and secret.lower() not in stored.lower()
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(code.replace("-", "") in h for code in codes for h in hashes)


# --- login with the second factor ----------------------------------------------------------------------------


def test_password_login_gets_a_ticket_then_a_code_gets_the_tokens(app, client, totp_user):
    _, authenticator, _ = totp_user
    response = password_login(client)
    assert response.headers["Cache-Control"] == "no-store"
    ticket = ticket_of(response)
    done = second_factor(client, ticket, code=authenticator.code())
    assert done.status_code == 200, done.get_json()
    data = done.get_json()["data"]
    assert set(data) == {"token", "expires_in", "refresh_token", "refresh_expires_in", "user"}
    assert client.get("/api/users/me", headers=bearer(data["token"])).status_code == 200
    used = second_factor(client, ticket, code=authenticator.code())
    assert (used.status_code, used.get_json()["status"]) == (401, "MFA_REQUIRED")
    assert "WWW-Authenticate" in used.headers


def test_a_code_is_accepted_once(app, client, totp_user):
    _, authenticator, _ = totp_user
    code = authenticator.code()
    assert second_factor(client, ticket_of(password_login(client)), code=code).status_code == 200
    replay = second_factor(client, ticket_of(password_login(client)), code=code)
    assert (replay.status_code, replay.get_json()["field"]) == (400, "code")


def test_a_code_of_the_step_before_or_after_now_is_accepted_and_two_steps_off_is_not(app, client, totp_user):
    _, authenticator, _ = totp_user
    totp, now = authenticator.totp, int(time.time()) // 30
    far = second_factor(client, ticket_of(password_login(client)), code=totp.generate_otp(now + 3))
    assert far.status_code == 400
    authenticator.last = now  # the confirmation used an earlier step; take the next one
    assert second_factor(client, ticket_of(password_login(client)), code=totp.generate_otp(now + 1)).status_code == 200


def test_five_wrong_codes_void_the_ticket(app, client, totp_user):
    _, authenticator, _ = totp_user
    ticket = ticket_of(password_login(client))
    for _ in range(5):
        wrong = second_factor(client, ticket, code=authenticator.wrong())
        assert (wrong.status_code, wrong.get_json()["field"]) == (400, "code")
    void = second_factor(client, ticket, code=authenticator.code())
    assert (void.status_code, void.get_json()["status"]) == (401, "MFA_REQUIRED")


def test_wrong_codes_across_tickets_are_limited_like_failed_logins(make_app, accounts_settings, make_user):
    app = make_app({**accounts_settings, "auth": {"max_failures_per_account": 3, "max_failures_per_ip": 100}})
    client = app.test_client()
    with app.app_context():
        from app.services.users import create_user

        create_user(PHONE, PASSWORD, "n")
    authenticator, _ = enable_totp(client, login(client, PHONE)["token"])
    for _ in range(3):  # a password alone buys new tickets, not new guesses
        assert second_factor(client, ticket_of(password_login(client)), code=authenticator.wrong()).status_code == 400
    limited = second_factor(client, ticket_of(password_login(client)), code=authenticator.code())
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


def test_a_missing_or_unknown_ticket_is_mfa_required(app, client, totp_user):
    unknown = second_factor(client, "x" * 43, code="123456")
    assert (unknown.status_code, unknown.get_json()["status"]) == (401, "MFA_REQUIRED")
    missing = client.post("/api/auth/login/mfa", json={"code": "123456"})
    assert (missing.status_code, missing.get_json()["field"]) == (400, "mfa_ticket")


def test_sms_login_does_not_bypass_the_second_factor(app, client, totp_user):
    _, authenticator, _ = totp_user
    code = send_sms_code(client, app, PHONE, "login")
    response = client.post("/api/auth/login", json={"phone": PHONE, "sms_code": code})
    assert response.status_code == 200
    assert second_factor(client, ticket_of(response), code=authenticator.code()).status_code == 200


# --- recovery codes ------------------------------------------------------------------------------------------


def test_a_recovery_code_logs_in_once_in_any_case_and_spacing(app, client, totp_user):
    _, _, codes = totp_user
    typed = codes[0].replace("-", " ").lower()
    done = second_factor(client, ticket_of(password_login(client)), recovery_code=typed)
    assert done.status_code == 200, done.get_json()
    again = second_factor(client, ticket_of(password_login(client)), recovery_code=codes[0])
    assert (again.status_code, again.get_json()["field"]) == (400, "recovery_code")
    token = done.get_json()["data"]["token"]
    assert client.get("/api/auth/mfa", headers=bearer(token)).get_json()["data"]["recovery_codes_left"] == 9


def test_new_recovery_codes_void_the_old_set(app, client, totp_user):
    token, _, old = totp_user
    renewed = client.post("/api/auth/mfa/recovery-codes", headers=bearer(token))
    assert renewed.status_code == 200 and renewed.headers["Cache-Control"] == "no-store"
    new = renewed.get_json()["data"]["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert second_factor(client, ticket_of(password_login(client)), recovery_code=old[1]).status_code == 400
    assert second_factor(client, ticket_of(password_login(client)), recovery_code=new[1]).status_code == 200


def test_recovery_codes_need_totp_on(app, client, user_id):
    token = login(client, PHONE)["token"]
    assert client.post("/api/auth/mfa/recovery-codes", headers=bearer(token)).status_code == 409


# --- password reset ------------------------------------------------------------------------------------------


def test_a_reset_of_a_totp_user_takes_effect_only_with_the_second_factor(app, client, totp_user):
    token, authenticator, _ = totp_user
    code = send_sms_code(client, app, PHONE, "reset_password")
    reset = client.post("/api/auth/password/reset",
                        json={"phone": PHONE, "sms_code": code, "new_password": NEW_PASSWORD})
    assert reset.status_code == 200
    ticket = ticket_of(reset)
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 200  # nothing changed yet
    ticket_of(password_login(client))  # the old password still opens the first step
    done = second_factor(client, ticket, code=authenticator.code())
    assert done.status_code == 200, done.get_json()
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 401  # every old session ended
    assert client.get("/api/users/me", headers=bearer(done.get_json()["data"]["token"])).status_code == 200
    assert client.post("/api/auth/login", json={"account": PHONE, "password": PASSWORD}).status_code == 401
    ticket_of(password_login(client, NEW_PASSWORD))


def test_a_reset_ticket_without_its_code_changes_nothing(app, client, totp_user):
    code = send_sms_code(client, app, PHONE, "reset_password")
    reset = client.post("/api/auth/password/reset",
                        json={"phone": PHONE, "sms_code": code, "new_password": NEW_PASSWORD})
    ticket = ticket_of(reset)
    for _ in range(5):
        assert second_factor(client, ticket, code=totp_user[1].wrong()).status_code == 400
    assert client.post("/api/auth/login", json={"account": PHONE, "password": NEW_PASSWORD}).status_code == 401
    ticket_of(password_login(client))


# --- turning it off ------------------------------------------------------------------------------------------


def test_turning_totp_off_voids_the_codes_and_login_gives_tokens_again(app, client, totp_user, user_id):
    token, _, codes = totp_user
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 204
    assert "token" in password_login(client).get_json()["data"]
    with app.app_context():
        assert db.session.query(RecoveryCode).filter_by(user_id=user_id).count() == 0
        assert db.session.get(User, user_id).totp_secret is None
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 404
    assert client.get("/api/auth/mfa", headers=bearer(token)).get_json()["data"] == {
        "totp": False, "recovery_codes_left": 0}


def test_an_outstanding_ticket_is_refused_once_totp_is_off(app, client, totp_user):
    token, authenticator, _ = totp_user
    ticket = ticket_of(password_login(client))
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 204
    response = second_factor(client, ticket, code=authenticator.code())
    assert (response.status_code, response.get_json()["status"]) == (401, "MFA_REQUIRED")


def test_renewals_at_once_leave_one_set(app, totp_user):
    """Eight renewals in parallel: each voids the set before it, so one set of 10 is left, not 80 (the user's row
    is locked while its codes are replaced)."""
    token = totp_user[0]

    def renew(_):
        return app.test_client().post("/api/auth/mfa/recovery-codes", headers=bearer(token)).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(renew, range(8))) == [200] * 8
    status = app.test_client().get("/api/auth/mfa", headers=bearer(token)).get_json()["data"]
    assert status["recovery_codes_left"] == 10


def test_a_deactivated_user_spends_no_code_on_the_ticket(app, client, totp_user, make_user, user_id):
    _, _, codes = totp_user
    ticket = ticket_of(password_login(client))
    make_user("+8613900139000", role="admin")
    admin = login(client, "+8613900139000")["token"]
    assert client.patch(f"/api/users/{user_id}", headers=bearer(admin), json={"is_active": False}).status_code == 200
    refused = second_factor(client, ticket, recovery_code=codes[0])
    assert refused.status_code == 403
    with app.app_context():
        assert db.session.query(RecoveryCode).filter_by(user_id=user_id).count() == 10
