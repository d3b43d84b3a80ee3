"""Tokens that name their session (app.services.session_tokens): what a session costs in Redis, and that no token
passes for another, for a guess, or for a retired one without ending its session (real Redis)."""

from __future__ import annotations

import secrets

import pytest

from app.services.users import create_user
from tests.fixtures.accounts import PASSWORD, bearer, login, refresh
from tests.support import deep_merge, wait_until

PHONE = "+8613800138000"
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
           "Safari/537.36")  # longer than Redis's 64-byte listpack values


@pytest.fixture
def app(make_app, accounts_settings, real_redis_settings):
    return make_app(deep_merge(accounts_settings, real_redis_settings))


def me(client, token: str) -> int:
    return client.get("/api/users/me", headers=bearer(token)).status_code


def with_secret(token: str, secret: str) -> str:
    """The token with another secret (and, for a refresh token, a mac of one's own)."""
    session_id, generation, *rest = token.split(".")
    return ".".join([session_id, generation, secret, *(secrets.token_urlsafe(16) for _ in rest[1:])])


def test_a_session_is_a_compact_hash_and_an_index_entry(app, client, make_user, redis_client, real_redis_settings):
    prefix = real_redis_settings["redis"]["prefix"]
    user_id = make_user(PHONE)
    tokens = [login(client, PHONE, headers={"User-Agent": agent}) for agent in (BROWSER, "短" * 200)]
    assert me(client, tokens[0]["token"]) == 200  # caches the profile
    kinds = {key[len(prefix):].rsplit(":", 1)[0] for key in redis_client.scan_iter(match=prefix + "auth:*")}
    assert kinds - {"auth:fail:ip", "auth:fail:account"} == {"auth:index", "auth:profile", "auth:session"}
    for pair in tokens:
        assert redis_client.object("encoding", f"{prefix}auth:session:{pair['token'].split('.')[0]}") == "listpack"
    assert redis_client.object("encoding", f"{prefix}auth:index:{user_id}") == "listpack"
    sessions = client.get("/api/auth/sessions", headers=bearer(tokens[1]["token"])).get_json()["data"]
    assert [s["user_agent"] for s in sessions] == [BROWSER, "短" * 200]  # whole, from its pieces


def test_a_refresh_token_retired_many_refreshes_ago_ends_the_session(app, client, make_user):
    make_user(PHONE)
    first = login(client, PHONE)
    pair = first
    for _ in range(5):
        pair = refresh(client, pair["refresh_token"]).get_json()["data"]
    assert me(client, pair["token"]) == 200
    assert refresh(client, first["refresh_token"]).status_code == 401
    assert me(client, pair["token"]) == 401
    assert refresh(client, pair["refresh_token"]).status_code == 401


def test_a_guessed_refresh_token_of_a_live_session_ends_nothing(app, client, make_user):
    make_user(PHONE)
    first = login(client, PHONE)
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    guesses = [with_secret(first["refresh_token"], secrets.token_urlsafe(32)),  # a retired generation
               with_secret(second["refresh_token"], secrets.token_urlsafe(32)),  # the current one
               with_secret(second["refresh_token"], secrets.token_urlsafe(32)).replace(".2.", ".9.")]  # a future one
    for guess in guesses:
        assert refresh(client, guess).status_code == 401
    assert me(client, second["token"]) == 200
    assert refresh(client, second["refresh_token"]).status_code == 200


def test_no_token_passes_for_another_kind_or_session(app, client, make_user):
    make_user(PHONE)
    mine, other = login(client, PHONE), login(client, PHONE)
    assert me(client, mine["refresh_token"]) == 401  # a refresh token is no access token
    assert refresh(client, mine["token"]).status_code == 401  # nor the reverse, and that ended nothing
    other_session = other["token"].split(".")[0]
    borrowed = ".".join([other_session, *mine["token"].split(".")[1:]])
    assert me(client, borrowed) == 401
    assert refresh(client, ".".join([other_session, *mine["refresh_token"].split(".")[1:]])).status_code == 401
    assert me(client, mine["token"]) == 200 and me(client, other["token"]) == 200


@pytest.mark.parametrize("token", ["*", "a.1.b", "*" * 16 + ".1." + "a" * 43, "a" * 16 + ".0." + "a" * 43,
                                   "a" * 16 + ".1." + "a" * 44, "a" * 16 + ":1." + "a" * 43, "é" * 43])
def test_a_token_of_no_known_form_is_401(app, client, token):
    assert me(client, token) == 401
    assert refresh(client, token).status_code == 401


def test_an_oversized_token_is_401_in_a_header_and_400_in_a_body(app, client):
    assert me(client, "a" * 4000) == 401
    answer = refresh(client, "a" * 4000)
    assert (answer.status_code, answer.get_json()["field"]) == (400, "refresh_token")


def test_an_access_token_stops_at_its_ttl_while_its_refresh_token_lives(make_app, accounts_settings,
                                                                        real_redis_settings):
    app = make_app(deep_merge(accounts_settings, {**real_redis_settings, "auth": {"token_ttl": 1}}))
    client = app.test_client()
    with app.app_context():
        create_user(PHONE, PASSWORD, "n")
    pair = login(client, PHONE)
    assert pair["expires_in"] == 1
    wait_until(lambda: me(client, pair["token"]) == 401)
    renewed = refresh(client, pair["refresh_token"])
    assert renewed.status_code == 200 and me(client, renewed.get_json()["data"]["token"]) == 200
