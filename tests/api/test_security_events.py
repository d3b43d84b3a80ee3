"""GET /api/auth/events: each kind of security event, recorded for the right user with the request's address and
User-Agent, newest first, a page at a time, only one's own, expired ones hidden and deleted, and in the same
transaction as the change it reports."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.models import SecurityEvent
from tests.fixtures.accounts import PASSWORD, bearer, enable_totp, login, send_sms_code
from tests.support import deep_merge, wait_until

PHONE, OTHER, ADMIN = "+8613800138000", "+8613900139000", "+8613700137000"
IP, UA = "203.0.113.7", "EventsTest/1.0 (security review)"
FIELDS = {"id", "type", "at", "ip", "user_agent", "session_id"}
NEW_PASSWORD = "a brand new secret phrase"


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


@pytest.fixture
def client(app):
    """A client whose every request comes from IP with the User-Agent UA."""
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=UA)
    return client


def page(client, token: str, **params) -> dict:
    response = client.get("/api/auth/events", headers=bearer(token), query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def events(client, token: str) -> list[dict]:
    return page(client, token, per_page=100)["items"]


def types(client, token: str) -> list[str]:
    return [event["type"] for event in events(client, token)]


def the_event(client, token: str, type_: str, session_id: str | None = None) -> dict:
    """The one event of ``type_``, checked to carry the contract's fields, this client's address and User-Agent,
    a recent time and ``session_id``."""
    [event] = [event for event in events(client, token) if event["type"] == type_]
    assert set(event) == FIELDS
    assert (event["ip"], event["user_agent"], event["session_id"]) == (IP, UA, session_id)
    at = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    return event


def session_of(client, token: str) -> str:
    response = client.get("/api/auth/sessions", headers=bearer(token))
    [current] = [s for s in response.get_json()["data"] if s["current"]]
    return str(current["id"])


def event_rows(app) -> list[tuple[int, str]]:
    with app.app_context():
        return [(row.user_id, row.type) for row in db.session.scalars(db.select(SecurityEvent))]


# --- each type ---------------------------------------------------------------------------------------------


def test_a_login_is_an_event_of_its_session(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    event = the_event(client, token, "login", session_of(client, token))
    assert isinstance(event["id"], int)


def test_a_wrong_password_of_a_known_account_is_login_failed_and_of_an_unknown_one_nothing(app, client, make_user):
    make_user(PHONE, email="me@example.com")
    for account in (PHONE, "me@example.com"):
        assert client.post("/api/auth/login", json={"account": account, "password": "wrong!wrong"}).status_code == 401
    before = event_rows(app)
    assert client.post("/api/auth/login", json={"account": OTHER, "password": "wrong!wrong"}).status_code == 401
    assert client.post("/api/auth/login", json={"account": "no@example.com", "password": "x" * 8}).status_code == 401
    assert event_rows(app) == before
    token = login(client, PHONE)["token"]
    assert types(client, token) == ["login", "login_failed", "login_failed"]
    assert {event["session_id"] for event in events(client, token)[1:]} == {None}


def test_logout_is_an_event_of_the_session_it_ended(client, make_user):
    make_user(PHONE)
    leaving, staying = login(client, PHONE)["token"], login(client, PHONE)["token"]
    ended = session_of(client, leaving)
    assert client.post("/api/auth/logout", headers=bearer(leaving)).status_code == 200
    the_event(client, staying, "logout", ended)


def test_a_retired_refresh_token_is_refresh_reuse_of_its_session(client, make_user):
    make_user(PHONE)
    first = login(client, PHONE)
    session_id = session_of(client, first["token"])
    assert client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 200
    assert client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    the_event(client, login(client, PHONE)["token"], "refresh_reuse", session_id)


def test_a_password_change_is_an_event_of_the_session_that_made_it(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    body = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.put("/api/auth/password", headers=bearer(token), json=body).status_code == 200
    the_event(client, token, "password_changed", session_of(client, token))


def test_an_sms_reset_is_password_reset(app, client, make_user):
    make_user(PHONE)
    code = send_sms_code(client, app, PHONE, "reset_password")
    body = {"phone": PHONE, "sms_code": code, "new_password": NEW_PASSWORD}
    assert client.post("/api/auth/password/reset", json=body).status_code == 200
    token = login(client, PHONE, NEW_PASSWORD)["token"]
    the_event(client, token, "password_reset")
    assert types(client, token) == ["login", "password_reset"]


def test_turning_totp_on_and_off_and_renewing_codes_are_events_of_the_session(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    session_id = session_of(client, token)
    enable_totp(client, token)
    the_event(client, token, "mfa_enabled", session_id)
    assert client.post("/api/auth/mfa/recovery-codes", headers=bearer(token)).status_code == 200
    the_event(client, token, "recovery_codes_renewed", session_id)
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 204
    the_event(client, token, "mfa_disabled", session_id)
    assert types(client, token) == ["mfa_disabled", "recovery_codes_renewed", "mfa_enabled", "login"]


def test_a_wrong_second_factor_is_login_failed(client, make_user):
    make_user(PHONE)
    authenticator, _ = enable_totp(client, login(client, PHONE)["token"])
    ticket = login(client, PHONE)["mfa_ticket"]
    wrong = client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": authenticator.wrong()})
    assert wrong.status_code == 400
    right = client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": authenticator.code()})
    assert right.status_code == 200, right.get_json()
    token = right.get_json()["data"]["token"]
    the_event(client, token, "login_failed")
    assert types(client, token) == ["login", "login_failed", "mfa_enabled", "login"]


def test_a_login_with_a_recovery_code_is_recovery_code_used_and_mails_the_user(make_app, accounts_settings, smtp,
                                                                                make_user):
    port, inbox = smtp
    app = make_app(deep_merge(accounts_settings, {"mail": {"server": "127.0.0.1", "port": port, "suppress": False}}))
    client = app.test_client()
    client.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=UA)
    make_user(PHONE, email="me@example.com")
    _, codes = enable_totp(client, login(client, PHONE)["token"])
    ticket = login(client, PHONE)["mfa_ticket"]
    response = client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "recovery_code": codes[0]})
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["data"]["token"]
    the_event(client, token, "recovery_code_used")
    assert types(client, token) == ["login", "recovery_code_used", "mfa_enabled", "login"]
    wait_until(lambda: len(inbox.messages) == 2, timeout=10)  # "two-step sign-in is on", then this one
    subjects = {email.message_from_bytes(mail.content)["Subject"].lower() for mail in inbox.messages}
    assert {mail.rcpt_tos[0] for mail in inbox.messages} == {"me@example.com"}
    assert any("recovery code" in subject for subject in subjects), subjects


def test_ending_one_of_your_sessions_is_session_ended(client, make_user):
    make_user(PHONE)
    token, other = login(client, PHONE)["token"], login(client, PHONE)["token"]
    other_id = session_of(client, other)
    assert client.delete(f"/api/auth/sessions/{other_id}", headers=bearer(token)).status_code == 204
    the_event(client, token, "session_ended", other_id)


def test_logout_all_is_session_ended_for_the_others_and_logout_for_this_one(client, make_user):
    make_user(PHONE)
    tokens = [login(client, PHONE)["token"] for _ in range(3)]
    ids = [session_of(client, token) for token in tokens]
    assert client.post("/api/auth/logout-all", headers=bearer(tokens[0])).status_code == 200
    found = events(client, login(client, PHONE)["token"])
    assert sorted(e["session_id"] for e in found if e["type"] == "session_ended") == sorted(ids[1:])
    assert [e["session_id"] for e in found if e["type"] == "logout"] == [ids[0]]


def test_an_admin_ending_a_users_sessions_is_session_ended_for_that_user(client, make_user):
    user_id, _ = make_user(PHONE), make_user(ADMIN, role="admin")
    ids = sorted(session_of(client, login(client, PHONE)["token"]) for _ in range(2))
    admin = login(client, ADMIN)["token"]
    assert client.delete(f"/api/users/{user_id}/sessions", headers=bearer(admin)).status_code == 204
    found = events(client, login(client, PHONE)["token"])
    ended = [e for e in found if e["type"] == "session_ended"]
    assert sorted(e["session_id"] for e in ended) == ids
    assert {(e["ip"], e["user_agent"]) for e in ended} == {("", "")}  # the admin's address is not the user's to see
    assert "session_ended" not in types(client, admin)


def test_changing_your_email_is_email_changed_of_your_session(client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    assert client.patch("/api/users/me", headers=bearer(token), json={"email": "new@example.com"}).status_code == 200
    the_event(client, token, "email_changed", session_of(client, token))
    assert client.patch("/api/users/me", headers=bearer(token), json={"email": "NEW@example.com"}).status_code == 200
    assert types(client, token).count("email_changed") == 1  # the same address: no change, no event


def test_an_admin_changing_a_users_email_is_that_users_event(client, make_user):
    user_id, _ = make_user(PHONE), make_user(ADMIN, role="admin")
    admin = login(client, ADMIN)["token"]
    response = client.patch(f"/api/users/{user_id}", headers=bearer(admin), json={"email": "new@example.com"})
    assert response.status_code == 200, response.get_json()
    [event] = [e for e in events(client, login(client, PHONE)["token"]) if e["type"] == "email_changed"]
    assert (event["ip"], event["user_agent"], event["session_id"]) == ("", "", None)  # not the admin's address
    assert "email_changed" not in types(client, admin)


# --- the list ------------------------------------------------------------------------------------------------


def test_events_are_newest_first_a_page_at_a_time(client, make_user):
    make_user(PHONE)
    for _ in range(3):
        client.post("/api/auth/login", json={"account": PHONE, "password": "wrong!wrong"})
    token = login(client, PHONE)["token"]
    client.post("/api/auth/reauth", headers=bearer(token), json={"password": PASSWORD})
    first, second, third = (page(client, token, page=n, per_page=2) for n in (1, 2, 3))
    assert {k: first[k] for k in ("page", "per_page", "total", "pages")} == {"page": 1, "per_page": 2, "total": 5,
                                                                            "pages": 3}
    listed = first["items"] + second["items"] + third["items"]
    assert [e["type"] for e in listed] == ["reauth", "login", "login_failed", "login_failed", "login_failed"]
    assert [e["id"] for e in listed] == sorted((e["id"] for e in listed), reverse=True)
    assert (second["page"], third["page"], len(third["items"])) == (2, 3, 1)
    assert page(client, token, page=4, per_page=2)["items"] == []
    bad = client.get("/api/auth/events", headers=bearer(token), query_string={"per_page": 0})
    assert bad.status_code == 400


def test_events_read_by_cursor_are_the_page_forms_in_the_same_order(client, make_user):
    make_user(PHONE)
    for _ in range(4):
        client.post("/api/auth/login", json={"account": PHONE, "password": "wrong!wrong"})
    token = login(client, PHONE)["token"]
    everyone = [e["id"] for e in events(client, token)]
    walked, cursor, pages = [], "", 0
    while cursor is not None:
        data = page(client, token, cursor=cursor, per_page=2)
        assert set(data) == {"items", "per_page", "next_cursor"}
        walked += [e["id"] for e in data["items"]]
        cursor, pages = data["next_cursor"], pages + 1
    assert (walked, pages) == (everyone, 3)  # 5 events: 2 + 2 + 1, and no empty page after them
    for query in ({"cursor": "AAAAAAAAAAAAAAAAAAAAAA"}, {"cursor": "", "page": 1}):
        bad = client.get("/api/auth/events", headers=bearer(token), query_string=query)
        assert (bad.status_code, bad.get_json()["field"]) == (400, "cursor")


def test_the_list_needs_a_token(client):
    assert client.get("/api/auth/events").status_code == 401


def test_a_user_sees_only_their_own_events(client, make_user):
    make_user(PHONE), make_user(OTHER)
    client.post("/api/auth/login", json={"account": OTHER, "password": "wrong!wrong"})
    mine, theirs = login(client, PHONE)["token"], login(client, OTHER)["token"]
    their_ids = {e["id"] for e in events(client, theirs)}
    assert types(client, mine) == ["login"]
    assert not their_ids & {e["id"] for e in events(client, mine)}
    assert types(client, theirs) == ["login", "login_failed"]


def test_expired_events_are_not_listed_and_go_when_their_user_gets_a_new_one(app, client, make_user):
    user_id, other_id = make_user(PHONE), make_user(OTHER)
    now, ttl = datetime.now(UTC), timedelta(days=90)  # auth.events_ttl_days' default
    with app.app_context():
        db.session.add_all([
            SecurityEvent(user_id=user_id, type="password_changed", at=now - ttl - timedelta(days=1)),
            SecurityEvent(user_id=user_id, type="email_changed", at=now - ttl + timedelta(days=1)),
            SecurityEvent(user_id=other_id, type="password_changed", at=now - ttl - timedelta(days=1)),
        ])
        db.session.commit()
    token = login(client, PHONE)["token"]
    assert types(client, token) == ["login", "email_changed"]
    rows = event_rows(app)
    assert (user_id, "password_changed") not in rows  # deleted with the login's event
    assert sorted(rows) == sorted([(user_id, "email_changed"), (user_id, "login"), (other_id, "password_changed")])


def test_expiry_follows_auth_events_ttl_days(make_app, accounts_settings, make_user):
    app = make_app(deep_merge(accounts_settings, {"auth": {"events_ttl_days": 7}}))
    client = app.test_client()
    user_id, now = make_user(PHONE), datetime.now(UTC)
    with app.app_context():
        db.session.add_all([SecurityEvent(user_id=user_id, type="logout", at=now - timedelta(days=8)),
                            SecurityEvent(user_id=user_id, type="reauth", at=now - timedelta(days=6))])
        db.session.commit()
    token = login(client, PHONE)["token"]
    assert types(client, token) == ["login", "reauth"]
    assert sorted(event_rows(app)) == [(user_id, "login"), (user_id, "reauth")]


# --- one transaction -----------------------------------------------------------------------------------------


def test_a_change_that_is_refused_at_commit_leaves_no_event(app, client, make_user):
    """The last admin changing their own email while demoting themself: the change is flushed, then refused
    (403, rolled back) when no active admin would remain; its email_changed must go with it."""
    admin_id = make_user(ADMIN, role="admin", email="admin@example.com")
    token = login(client, ADMIN)["token"]
    response = client.patch(f"/api/users/{admin_id}", headers=bearer(token),
                            json={"email": "new@example.com", "role": "user"})
    assert response.status_code == 403, response.get_json()
    assert client.get("/api/users/me", headers=bearer(token)).get_json()["data"]["email"] == "admin@example.com"
    assert types(client, token) == ["login"]


def test_a_deleted_users_events_and_recovery_codes_go_with_them(client, make_user):
    """On SQLite a new user can get a deleted user's id (the highest one): they must inherit nothing of it."""
    make_user(ADMIN, role="admin")
    admin = login(client, ADMIN)["token"]
    gone = make_user(PHONE)
    enable_totp(client, login(client, PHONE)["token"])
    client.post("/api/auth/login", json={"account": PHONE, "password": "wrong!wrong"})
    assert client.delete(f"/api/users/{gone}", headers=bearer(admin)).status_code == 204
    body = {"phone": OTHER, "password": PASSWORD, "nickname": "new"}
    created = client.post("/api/users/", headers=bearer(admin), json=body)
    assert created.status_code == 201, created.get_json()
    token = login(client, OTHER)["token"]
    assert types(client, token) == ["login"]
    status = client.get("/api/auth/mfa", headers=bearer(token)).get_json()["data"]
    assert status == {"totp": False, "recovery_codes_left": 0}
