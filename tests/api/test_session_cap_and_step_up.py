"""At most auth.max_sessions sessions per user (the oldest ends), and ending your other sessions needs a recent
authentication (ASVS 7.5.2): a stolen token alone cannot throw its owner out."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import PASSWORD, bearer, login
from tests.support import wait_until

PHONE = "+8613800138000"


def me(client, token) -> int:
    return client.get("/api/users/me", headers=bearer(token)).status_code


def test_a_login_past_max_sessions_ends_the_oldest(make_app, accounts_settings, make_user):
    app = make_app({**accounts_settings, "auth": {"max_sessions": 2}})
    client = app.test_client()
    make_user(PHONE)
    first, second, third = (login(client, PHONE)["token"] for _ in range(3))
    assert (me(client, first), me(client, second), me(client, third)) == (401, 200, 200)
    assert len(client.get("/api/auth/sessions", headers=bearer(third)).get_json()["data"]) == 2


@pytest.fixture
def stale(make_app, accounts_settings, make_user):
    """A client whose user has two sessions, ``old`` and ``other``, past a 1-second reauth window."""
    app = make_app({**accounts_settings, "auth": {"reauth_window": 1}})
    client = app.test_client()
    make_user(PHONE)
    old, other = login(client, PHONE)["token"], login(client, PHONE)["token"]

    def not_recent() -> bool:  # ending a session that does not exist: 404 while recent, then 401
        return client.delete("/api/auth/sessions/none", headers=bearer(old)).status_code == 401

    wait_until(not_recent, timeout=5)
    return client, old, other


def test_logout_all_needs_a_recent_authentication(stale):
    client, old, other = stale
    refused = client.post("/api/auth/logout-all", headers=bearer(old))
    assert (refused.status_code, refused.get_json()["status"]) == (401, "REAUTH_REQUIRED")
    assert me(client, other) == 200
    assert client.post("/api/auth/reauth", headers=bearer(old), json={"password": PASSWORD}).status_code == 200
    assert client.post("/api/auth/logout-all", headers=bearer(old)).status_code == 200
    assert (me(client, old), me(client, other)) == (401, 401)


def test_ending_another_session_needs_a_recent_authentication_and_this_one_does_not(stale):
    client, old, other = stale
    sessions = client.get("/api/auth/sessions", headers=bearer(old)).get_json()["data"]
    this = next(s["id"] for s in sessions if s["current"])
    that = next(s["id"] for s in sessions if not s["current"])
    refused = client.delete(f"/api/auth/sessions/{that}", headers=bearer(old))
    assert (refused.status_code, refused.get_json()["status"]) == (401, "REAUTH_REQUIRED")
    assert me(client, other) == 200
    assert client.delete(f"/api/auth/sessions/{this}", headers=bearer(old)).status_code == 204
    assert me(client, old) == 401
