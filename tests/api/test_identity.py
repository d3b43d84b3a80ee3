"""app.auth, "who is calling", as a handler sees it: the identity @login_check checked, and nothing without it."""

from __future__ import annotations

import flask
import pytest
from flask_restx import Namespace, Resource

from app import auth
from app.decorators import login_check
from app.services.users import create_user

SECRET = "a long enough password"
probe = Namespace("probe")


@probe.route("/identity")
class IdentityProbe(Resource):
    @login_check
    def get(self):
        identity = auth.current_identity()
        return {"user_id": identity.user_id, "session_id": identity.session_id, "is_admin": identity.is_admin,
                "nickname": identity.profile.nickname, "user_is_the_same": auth.current_user().id == identity.user_id}


@probe.route("/unchecked")
class UncheckedProbe(Resource):
    def get(self):  # no @login_check: a token in the headers must not make an identity
        return {"user_id": auth.current_identity().user_id}


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings, extra_namespaces=[(probe, "/probe")])


def signed_in(app, client, phone: str, role: str = "user") -> tuple[int, str]:
    """(user id, access token) of a new account."""
    with app.app_context():
        user_id = create_user(phone, SECRET, f"n{phone[-4:]}", role=role).id
    answer = client.post("/api/auth/login", json={"account": phone, "password": SECRET})
    assert answer.status_code == 200, answer.get_json()
    return user_id, answer.get_json()["data"]["token"]


@pytest.mark.parametrize("role", ["user", "admin"])
def test_a_handler_reads_who_is_calling_from_the_checked_identity(app, client, role):
    user_id, token = signed_in(app, client, "+8613800138000", role)
    [session] = client.get("/api/auth/sessions", headers={"token": token}).get_json()["data"]

    answer = client.get("/api/probe/identity", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"user_id": user_id, "session_id": session["id"], "is_admin": role == "admin",
                                 "nickname": "n8000", "user_is_the_same": True}


def test_a_handler_without_login_check_has_no_identity_even_with_a_live_token(app, client):
    _, token = signed_in(app, client, "+8613800138000")
    answer = client.get("/api/probe/unchecked", headers={"token": token})
    assert answer.status_code == 500 and answer.get_json()["status"] == "SERVER_ERROR"


def test_each_request_checks_its_own_token(app, client):
    first_id, first = signed_in(app, client, "+8613800138000")
    second_id, second = signed_in(app, client, "+8613900139000")
    assert client.get("/api/probe/identity", headers={"token": first}).get_json()["user_id"] == first_id
    assert client.get("/api/probe/identity", headers={"token": second}).get_json()["user_id"] == second_id
    assert client.get("/api/probe/identity").status_code == 401


def test_no_cookie_session_is_opened_and_writing_one_says_why(app, client):
    """Callers sign in with tokens: Flask's cookie session is never opened (nor its cookie set)."""
    signed_in(app, client, "+8613800138007")
    answer = client.post("/api/auth/login", json={"account": "+8613800138007", "password": SECRET})
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers
    with app.test_request_context("/", headers={"Cookie": "session=eyJ4IjoxfQ.forged"}):
        assert dict(flask.session) == {}
        with pytest.raises(RuntimeError, match="signs callers in with tokens"):
            flask.session["user_id"] = 1
        with pytest.raises(RuntimeError, match="signs callers in with tokens"):
            flask.session |= {"user_id": 1}
