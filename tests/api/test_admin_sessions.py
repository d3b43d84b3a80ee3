"""DELETE /api/users/<id>/sessions: an admin ends every session of a user, and only that user's."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import bearer, login

USER, ADMIN, BYSTANDER = "+8613800138000", "+8613700137000", "+8613900139000"


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


def me(client, pair) -> int:
    return client.get("/api/users/me", headers=bearer(pair["token"])).status_code


def refresh(client, pair) -> int:
    return client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code


def end_sessions(client, user_id, pair):
    return client.delete(f"/api/users/{user_id}/sessions", headers=bearer(pair["token"]))


def test_an_admin_ends_every_session_of_a_user(client, make_user):
    user_id, _ = make_user(USER), make_user(ADMIN, role="admin")
    phone, laptop = login(client, USER), login(client, USER)
    admin = login(client, ADMIN)

    response = end_sessions(client, user_id, admin)
    assert (response.status_code, response.data) == (204, b"")
    assert [me(client, phone), me(client, laptop)] == [401, 401]
    assert [refresh(client, phone), refresh(client, laptop)] == [401, 401]

    again = login(client, USER)  # the account itself is untouched: a new login works
    assert [s["current"] for s in client.get("/api/auth/sessions", headers=bearer(again["token"]))
            .get_json()["data"]] == [True]
    events = client.get("/api/auth/events", headers=bearer(again["token"])).get_json()["data"]["items"]
    assert [e["type"] for e in events].count("session_ended") == 2


def test_the_admins_and_other_users_sessions_are_untouched(client, make_user):
    user_id, _, _ = make_user(USER), make_user(ADMIN, role="admin"), make_user(BYSTANDER)
    login(client, USER)
    admin, admin_elsewhere, bystander = login(client, ADMIN), login(client, ADMIN), login(client, BYSTANDER)

    assert end_sessions(client, user_id, admin).status_code == 204
    assert [me(client, admin), me(client, admin_elsewhere), me(client, bystander)] == [200, 200, 200]
    assert [refresh(client, admin_elsewhere), refresh(client, bystander)] == [200, 200]


def test_a_user_who_is_not_an_admin_gets_403(client, make_user):
    user_id, other_id = make_user(USER), make_user(BYSTANDER)
    user, other = login(client, USER), login(client, BYSTANDER)

    for target in (other_id, user_id):  # neither another user's sessions nor one's own this way
        response = end_sessions(client, target, user)
        assert (response.status_code, response.get_json()["status"]) == (403, "FORBIDDEN")
    assert [me(client, user), me(client, other)] == [200, 200]
    assert client.delete(f"/api/users/{other_id}/sessions").status_code == 401


@pytest.mark.parametrize("user_id", ["999999", "0"])
def test_an_unknown_user_is_404(client, make_user, user_id):
    make_user(ADMIN, role="admin")
    response = client.delete(f"/api/users/{user_id}/sessions", headers=bearer(login(client, ADMIN)["token"]))
    assert (response.status_code, response.get_json()["status"]) == (404, "NOT_FOUND")
