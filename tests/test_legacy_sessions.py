"""Sessions opened before tokens named their session (app.services.legacy_sessions) keep working after the
upgrade: their tokens authorize and refresh, a retired refresh token still ends the session, they are listed,
ended and pruned beside new ones. Each is written as that release wrote it (its OPEN script, below), on real Redis.
Delete this module with app.services.legacy_sessions."""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest

from app.extensions import redis_store
from app.services.sessions import prune_session_index
from tests.fixtures.accounts import bearer, login, refresh
from tests.support import deep_merge, wait_until

PHONE = "+8613800138000"
# The session script of the release before, verbatim: a key per token, a set of session ids per user.
LEGACY_OPEN = """
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'created_at', ARGV[3], 'last_seen_at', ARGV[3], 'auth_at', ARGV[3],
           'ip', ARGV[4], 'user_agent', ARGV[5], 'access', ARGV[6], 'refresh', ARGV[7])
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[10])
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[9])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[10])
redis.call('SADD', KEYS[4], ARGV[1])
return redis.call('EXPIRE', KEYS[4], ARGV[11])
"""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_legacy_session(app, user_id: int, user_agent: str = "old-app/1.0") -> dict:
    """A session as the release before opened it: its id and its 43-character tokens."""
    session_id, token, refresh = secrets.token_urlsafe(12), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with app.app_context():
        key = redis_store.key
        redis_store.eval(LEGACY_OPEN, 4, key("auth", "session", session_id), key("auth", "access", digest(token)),
                         key("auth", "refresh", digest(refresh)), key("auth", "user", str(user_id)),
                         session_id, user_id, f"{time.time():.3f}", "203.0.113.9", user_agent, digest(token),
                         digest(refresh), 0, 7200, 2592000, 2592000)
    return {"id": session_id, "token": token, "refresh_token": refresh}


@pytest.fixture
def app(make_app, accounts_settings, real_redis_settings):
    return make_app(deep_merge(accounts_settings, real_redis_settings))


def me(client, token: str) -> int:
    return client.get("/api/users/me", headers=bearer(token)).status_code


def test_a_session_of_the_release_before_authorizes_refreshes_and_is_listed(app, client, make_user):
    old = open_legacy_session(app, make_user(PHONE))
    assert me(client, old["token"]) == 200
    new = login(client, PHONE, headers={"User-Agent": "new-app/2.0"})
    listed = client.get("/api/auth/sessions", headers=bearer(new["token"])).get_json()["data"]
    assert [(s["id"], s["user_agent"], s["current"]) for s in listed] == [
        (old["id"], "old-app/1.0", False), (new["token"].split(".")[0], "new-app/2.0", True)]
    renewed = refresh(client, old["refresh_token"])
    assert renewed.status_code == 200
    pair = renewed.get_json()["data"]
    assert me(client, pair["token"]) == 200 and me(client, old["token"]) == 401
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_a_retired_refresh_token_of_the_release_before_ends_its_session(app, client, make_user, redis_client,
                                                                         real_redis_settings):
    old = open_legacy_session(app, make_user(PHONE))
    pair = refresh(client, old["refresh_token"]).get_json()["data"]
    assert refresh(client, old["refresh_token"]).status_code == 401
    assert me(client, pair["token"]) == 401
    prefix = real_redis_settings["redis"]["prefix"]
    assert not redis_client.exists(f"{prefix}auth:session:{old['id']}", f"{prefix}auth:access:{digest(pair['token'])}")


def test_ending_every_session_ends_both_kinds_and_their_token_keys(app, client, make_user, redis_client,
                                                                    real_redis_settings):
    user_id = make_user(PHONE)
    old = open_legacy_session(app, user_id)
    new = login(client, PHONE)
    assert client.post("/api/auth/logout-all", headers=bearer(new["token"])).status_code == 200
    assert me(client, old["token"]) == 401 and me(client, new["token"]) == 401
    prefix = real_redis_settings["redis"]["prefix"]
    left = [key for key in redis_client.scan_iter(match=f"{prefix}auth:*")
            if key.split(":")[-2] in ("access", "refresh", "session", "user", "index")]
    assert left == []


def test_the_prune_removes_expired_ids_from_sets_of_the_release_before(app, client, make_user, redis_client,
                                                                        real_redis_settings):
    user_id = make_user(PHONE)
    gone, kept = open_legacy_session(app, user_id), open_legacy_session(app, user_id)
    prefix = real_redis_settings["redis"]["prefix"]
    redis_client.pexpire(f"{prefix}auth:session:{gone['id']}", 1)
    wait_until(lambda: not redis_client.exists(f"{prefix}auth:session:{gone['id']}"))
    with app.app_context():
        assert prune_session_index() == 1
    assert redis_client.smembers(f"{prefix}auth:user:{user_id}") == {kept["id"]}
    assert me(client, kept["token"]) == 200
