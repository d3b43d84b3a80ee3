"""/api/auth: register, login, tokens, refresh, sessions, passwords, brute-force limits (real Redis)."""

from __future__ import annotations

import time

import pytest

from app.extensions import db
from app.models import User
from tests.fixtures.accounts import PASSWORD, bearer, login, send_sms_code
from tests.support import deep_merge, wait_until

PHONE, OTHER = "+8613800138000", "+8613900139000"
USER_FIELDS = {"id", "phone", "email", "nickname", "role", "is_active", "created_at", "last_login_at"}


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


def sms_code(app, phone: str, purpose: str, client) -> str:
    return send_sms_code(client, app, phone, purpose)


def register(client, app, phone=PHONE, password=PASSWORD, **extra):
    body = {"phone": phone, "password": password, "nickname": "小明", "sms_code": sms_code(app, phone, "register", client)}
    return client.post("/api/auth/register", json={**body, **extra})


def client_with_user(make_app, accounts_settings, overrides):
    """A client of an app with ``overrides`` whose database holds the account PHONE / PASSWORD."""
    from app.services.users import create_user

    app = make_app(deep_merge(accounts_settings, overrides))
    with app.app_context():
        create_user(PHONE, PASSWORD, "n")
    return app.test_client()


def me(client, token):
    return client.get("/api/users/me", headers=bearer(token))


# --- register -------------------------------------------------------------------------------------


def test_register_with_an_sms_code_creates_the_user(app, client):
    response = register(client, app, email="Me@Example.com")
    assert response.status_code == 201
    user = response.get_json()["data"]
    assert set(user) == USER_FIELDS
    assert (user["phone"], user["email"], user["role"], user["is_active"]) == (PHONE, "me@example.com", "user", True)
    assert user["last_login_at"] is None


def test_register_with_an_sms_ticket(app, client):
    code = sms_code(app, PHONE, "register", client)
    ticket = client.post("/api/common/sms/verify", json={"phone": PHONE, "purpose": "register", "code": code})
    body = {"phone": "13800138000", "password": PASSWORD, "nickname": "n",
            "sms_ticket": ticket.get_json()["data"]["sms_ticket"]}
    assert client.post("/api/auth/register", json=body).status_code == 201


def test_register_without_proof_or_with_a_wrong_code_is_400_on_sms_code(app, client):
    body = {"phone": PHONE, "password": PASSWORD, "nickname": "n"}
    assert client.post("/api/auth/register", json=body).get_json()["field"] == "sms_code"
    code = sms_code(app, PHONE, "register", client)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    response = client.post("/api/auth/register", json={**body, "sms_code": wrong})
    assert (response.status_code, response.get_json()["field"]) == (400, "sms_code")


def test_register_with_a_taken_phone_or_email_is_409(app, client, make_user):
    make_user(OTHER, email="taken@example.com")
    response = register(client, app, email="taken@example.com")
    assert (response.status_code, response.get_json()["field"]) == (409, "email")
    third = "+8613700137000"
    code = sms_code(app, third, "register", client)
    make_user(third)  # registered after its code was sent: the proof is valid, the phone taken
    body = {"phone": third, "password": PASSWORD, "nickname": "n", "sms_code": code}
    response = client.post("/api/auth/register", json=body)
    assert (response.status_code, response.get_json()["field"]) == (409, "phone")


@pytest.mark.parametrize("password", ["short", "x" * 129])
def test_register_password_must_be_8_to_128_characters(app, client, password):
    response = register(client, app, password=password)
    assert (response.status_code, response.get_json()["field"]) == (400, "password")


# --- login and tokens -------------------------------------------------------------------------------


def test_login_by_phone_or_email_returns_two_long_random_tokens(app, client, make_user):
    make_user(PHONE, email="me@example.com")
    for account in ("13800138000", "ME@example.com"):
        data = login(client, account)
        assert len(data["token"]) >= 43 and len(data["refresh_token"]) >= 43  # ≥ 256 bits, base64url
        assert data["token"] != data["refresh_token"]
        assert (data["expires_in"], data["refresh_expires_in"]) == (7200, 2592000)
        assert set(data["user"]) == USER_FIELDS and data["user"]["last_login_at"]


def test_the_password_is_checked_exactly_as_sent(app, client):
    """ASVS 6.2.8: neither register nor login trims or case-folds it; a space at the end counts."""
    assert register(client, app, password="Mixed Case, trailing space ").status_code == 201
    for near in ("Mixed Case, trailing space", "mixed case, trailing space ", "Mixed Case, trailing space  "):
        assert client.post("/api/auth/login", json={"account": PHONE, "password": near}).status_code == 401
    login(client, PHONE, "Mixed Case, trailing space ")


def test_wrong_password_and_unknown_account_get_the_same_401(app, client, make_user):
    make_user(PHONE)
    wrong = client.post("/api/auth/login", json={"account": PHONE, "password": "not the password"})
    unknown = client.post("/api/auth/login", json={"account": OTHER, "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["message"] == unknown.get_json()["message"]


def test_unknown_account_spends_the_time_of_a_password_check(make_app, accounts_settings):
    """With production-strength Argon2 the hash dominates: both paths cost about as much CPU.

    CPU time of the whole process (the hash runs on a pool thread) is what the request itself spent, however
    busy the machine is; wall time is not. Pairs are interleaved and their median ratio taken, so a slow spell
    weighs on both sides alike. Without the dummy hash an unknown account costs some 50 times less.
    """
    strong = {"argon2_time_cost": 3, "argon2_memory_cost": 65536, "max_failures_per_account": 100,
              "max_failures_per_ip": 100}
    client = client_with_user(make_app, accounts_settings, {"auth": strong})

    def cpu(account: str) -> float:
        started = time.process_time()
        assert client.post("/api/auth/login", json={"account": account, "password": "wrong password"}).status_code == 401
        return time.process_time() - started

    cpu(PHONE), cpu(OTHER)  # warm-up: the hasher and its dummy hash are made on first use
    ratios = sorted(cpu(OTHER) / cpu(PHONE) for _ in range(7))
    assert 0.5 < ratios[3] < 2, ratios


def test_login_by_sms_code(app, client, make_user):
    make_user(PHONE)
    code = sms_code(app, PHONE, "login", client)
    response = client.post("/api/auth/login", json={"phone": "13800138000", "sms_code": code})
    assert response.status_code == 200
    assert me(client, response.get_json()["data"]["token"]).status_code == 200


def test_login_with_neither_form_is_400(client):
    response = client.post("/api/auth/login", json={})
    assert response.status_code == 400


def test_deactivated_user_cannot_log_in(app, client, make_user):
    user_id = make_user(PHONE)
    with app.app_context():
        db.session.get(User, user_id).is_active = False
        db.session.commit()
    assert client.post("/api/auth/login", json={"account": PHONE, "password": PASSWORD}).status_code == 403


def test_token_header_or_bearer_authorizes(app, client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    assert me(client, token).get_json()["data"]["phone"] == PHONE
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"token": "nope"}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
def test_missing_or_unknown_token_is_401(client, headers):
    response = client.get("/api/users/me", headers=headers)
    assert (response.status_code, response.get_json()["status"]) == (401, "NOT_AUTHORIZED")


def test_access_token_expires_after_its_ttl(make_app, accounts_settings):
    client = client_with_user(make_app, accounts_settings, {"auth": {"token_ttl": 1}})
    token = login(client, PHONE)["token"]
    assert me(client, token).status_code == 200
    wait_until(lambda: me(client, token).status_code == 401, timeout=5, interval=0.2)


def test_deactivated_users_token_is_403(app, client, make_user):
    user_id = make_user(PHONE)
    token = login(client, PHONE)["token"]
    with app.app_context():
        db.session.get(User, user_id).is_active = False
        db.session.commit()
    assert me(client, token).status_code == 403


# --- refresh -------------------------------------------------------------------------------------------


def test_refresh_rotates_the_pair(app, client, make_user):
    make_user(PHONE)
    first = login(client, PHONE)
    response = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    second = response.get_json()["data"]
    assert second["token"] != first["token"] and second["refresh_token"] != first["refresh_token"]
    assert me(client, second["token"]).status_code == 200
    assert me(client, first["token"]).status_code == 401  # the old access token went with the rotation


def test_a_reused_refresh_token_ends_the_whole_session(app, client, make_user):
    make_user(PHONE)
    first = login(client, PHONE)
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).get_json()["data"]
    reuse = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert me(client, second["token"]).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401


def test_unknown_refresh_token_is_401(client):
    assert client.post("/api/auth/refresh", json={"refresh_token": "nope"}).status_code == 401


# --- sessions and revocation ------------------------------------------------------------------------------


def test_logout_ends_only_the_current_session(app, client, make_user):
    make_user(PHONE)
    one, two = login(client, PHONE)["token"], login(client, PHONE)["token"]
    assert client.post("/api/auth/logout", headers=bearer(one)).status_code == 200
    assert me(client, one).status_code == 401
    assert me(client, two).status_code == 200


def test_logout_all_ends_every_session(app, client, make_user):
    make_user(PHONE)
    tokens = [login(client, PHONE)["token"] for _ in range(3)]
    assert client.post("/api/auth/logout-all", headers=bearer(tokens[0])).status_code == 200
    assert [me(client, t).status_code for t in tokens] == [401, 401, 401]


def test_sessions_are_listed_with_their_details(app, client, make_user):
    make_user(PHONE)
    login(client, PHONE, headers={"User-Agent": "phone-app/1.0"})
    token = login(client, PHONE, headers={"User-Agent": "browser/2.0"})["token"]
    response = client.get("/api/auth/sessions", headers=bearer(token))
    sessions = response.get_json()["data"]
    assert [s["user_agent"] for s in sessions] == ["phone-app/1.0", "browser/2.0"]
    assert [s["current"] for s in sessions] == [False, True]
    assert all(s["ip"] == "127.0.0.1" and s["created_at"] and s["last_seen_at"] for s in sessions)


def test_ending_one_session_by_id(app, client, make_user):
    make_user(PHONE)
    other = login(client, PHONE)["token"]
    token = login(client, PHONE)["token"]
    other_id = next(s["id"] for s in client.get("/api/auth/sessions", headers=bearer(token)).get_json()["data"]
                    if not s["current"])
    response = client.delete(f"/api/auth/sessions/{other_id}", headers=bearer(token))
    assert (response.status_code, response.data) == (204, b"")
    assert me(client, other).status_code == 401
    assert client.delete(f"/api/auth/sessions/{other_id}", headers=bearer(token)).status_code == 404


def test_another_users_session_cannot_be_ended(app, client, make_user):
    make_user(PHONE), make_user(OTHER)
    mine, theirs = login(client, PHONE)["token"], login(client, OTHER)["token"]
    their_id = client.get("/api/auth/sessions", headers=bearer(theirs)).get_json()["data"][0]["id"]
    assert client.delete(f"/api/auth/sessions/{their_id}", headers=bearer(mine)).status_code == 404
    assert me(client, theirs).status_code == 200


# --- passwords ------------------------------------------------------------------------------------------------


def test_changing_the_password_ends_the_other_sessions(app, client, make_user):
    make_user(PHONE)
    other, token = login(client, PHONE)["token"], login(client, PHONE)["token"]
    body = {"old_password": PASSWORD, "new_password": "a brand new secret"}
    assert client.put("/api/auth/password", json=body, headers=bearer(token)).status_code == 200
    assert me(client, token).status_code == 200
    assert me(client, other).status_code == 401
    login(client, PHONE, "a brand new secret")


def test_changing_the_password_needs_the_old_one(app, client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    body = {"old_password": "not it at all", "new_password": "a brand new secret"}
    response = client.put("/api/auth/password", json=body, headers=bearer(token))
    assert (response.status_code, response.get_json()["field"]) == (400, "old_password")


def test_reset_by_sms_ends_every_session(app, client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    code = sms_code(app, PHONE, "reset_password", client)
    body = {"phone": "13800138000", "sms_code": code, "new_password": "a brand new secret"}
    assert client.post("/api/auth/password/reset", json=body).status_code == 200
    assert me(client, token).status_code == 401
    login(client, PHONE, "a brand new secret")
    assert client.post("/api/auth/password/reset", json=body).status_code == 400  # the code is used up


def test_login_rehashes_when_the_argon2_parameters_change(make_app, accounts_settings):
    app = make_app(accounts_settings)
    from app.services.users import create_user

    with app.app_context():
        user_id = create_user(PHONE, PASSWORD, "n").id
        before = db.session.get(User, user_id).password_hash
    stronger = make_app(deep_merge(accounts_settings, {"auth": {"argon2_time_cost": 2}}))
    login(stronger.test_client(), PHONE)
    with stronger.app_context():
        after = db.session.get(User, user_id).password_hash
    assert "t=1" in before and "t=2" in after


# --- brute force -------------------------------------------------------------------------------------------------


def test_repeated_failures_for_an_account_are_429(make_app, accounts_settings):
    client = client_with_user(make_app, accounts_settings, {"auth": {"max_failures_per_account": 3}})
    bad = {"account": PHONE, "password": "wrong password"}
    assert [client.post("/api/auth/login", json=bad).status_code for _ in range(3)] == [401, 401, 401]
    blocked = client.post("/api/auth/login", json={"account": PHONE, "password": PASSWORD})
    assert blocked.status_code == 429
    assert 800 < int(blocked.headers["Retry-After"]) <= 900


def test_a_success_clears_the_accounts_failures(make_app, accounts_settings):
    client = client_with_user(make_app, accounts_settings, {"auth": {"max_failures_per_account": 3}})
    bad = {"account": PHONE, "password": "wrong password"}
    for _ in range(2):
        client.post("/api/auth/login", json=bad)
    login(client, PHONE)
    assert [client.post("/api/auth/login", json=bad).status_code for _ in range(2)] == [401, 401]
    login(client, PHONE)


def test_repeated_failures_from_one_address_are_429(make_app, accounts_settings):
    client = make_app(deep_merge(accounts_settings, {"auth": {"max_failures_per_ip": 3}})).test_client()
    codes = [client.post("/api/auth/login", json={"account": f"+86138001380{i:02d}", "password": "wrong password"})
             .status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


# --- secrets stay secret ----------------------------------------------------------------------------------------


def test_no_password_hash_or_token_in_bodies_or_logs(make_app, accounts_settings, tmp_path):
    """The console SMS gateway logs its message, so the log file is the one place the code is read from."""
    import logging
    import re

    logfile = tmp_path / "secrets" / "app.log"
    app = make_app(deep_merge(accounts_settings, {"sms": {"gateway": "console"}, "log": {"file": str(logfile)}}))
    client = app.test_client()

    def read_logs() -> str:
        for handler in logging.getLogger().handlers:
            handler.flush()
        return logfile.read_text()

    password = "a-very-distinct-password-42"
    assert client.post("/api/common/sms/send", json={"phone": PHONE, "purpose": "register"}).status_code == 200
    code = re.findall(r"verification code is (\d{6})", read_logs())[-1]
    registered = client.post("/api/auth/register", json={"phone": PHONE, "password": password, "nickname": "n",
                                                           "sms_code": code})
    tokens = login(client, PHONE, password)
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    profile = me(client, refreshed.get_json()["data"]["token"])
    client.post("/api/auth/login", json={"account": PHONE, "password": password + "-wrong"})
    bodies = registered.get_data(as_text=True) + profile.get_data(as_text=True)
    with app.app_context():
        password_hash = db.session.scalar(db.select(User.password_hash))
    assert password not in bodies and password_hash not in bodies and "argon2" not in bodies
    logs = read_logs()
    for secret in (password, password_hash, tokens["token"], tokens["refresh_token"],
                   refreshed.get_json()["data"]["token"]):
        assert secret not in logs
