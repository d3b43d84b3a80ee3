"""Attacks on tokens that name their session, through HTTP on real Redis (from an outside review): bent tokens,
forged macs, a lost refresh, a crafted profile snapshot, User-Agents that would pile up, a refresh racing
logout-all."""

from __future__ import annotations

import base64
import hmac
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.fixtures.accounts import bearer, login, refresh
from tests.support import SECRET, deep_merge

PHONE, OTHER = "+8613800138000", "+8613800138001"


@pytest.fixture
def app(make_app, accounts_settings, real_redis_settings):
    return make_app(deep_merge(accounts_settings, {**real_redis_settings, "auth": {"max_sessions": 2}}))


@pytest.fixture
def prefix(real_redis_settings) -> str:
    return real_redis_settings["redis"]["prefix"]


def test_user_agents_of_ended_sessions_do_not_stay_in_redis(app, client, make_user, redis_client, prefix):
    """One account logging in with a new User-Agent each time (its oldest sessions end past max_sessions) leaves
    nothing of the ended ones: a User-Agent lives in its session's hash."""
    user_id = make_user(PHONE)
    for n in range(20):
        login(client, PHONE, headers={"User-Agent": f"{n:04d}" + "é" * 252})
    keys = sorted(key[len(prefix):] for key in redis_client.scan_iter(match=f"{prefix}auth:*")
                  if not key.startswith(f"{prefix}auth:fail"))
    assert len(keys) == 3 and keys[0] == f"auth:index:{user_id}" and keys[1].startswith("auth:session:"), keys
    assert redis_client.object("encoding", prefix + keys[1]) == "listpack"  # every piece of it at most 64 bytes


def mac_under(secret_key: str, body: str) -> str:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"session-refresh-tokens").derive(
        secret_key.encode())
    return base64.urlsafe_b64encode(hmac.digest(key, body.encode(), "sha256")[:16]).rstrip(b"=").decode()


def test_with_the_secret_key_but_not_the_token_no_current_refresh_token_can_be_made(app, client, make_user):
    """Redis keeps only digests: a refresh token of the current generation made with SECRET_KEY but a secret of
    one's own is refused and ends nothing (one of an earlier generation would end the session: that needs the key)."""
    make_user(PHONE)
    pair = login(client, PHONE)
    session_id, generation, _secret, _mac = pair["refresh_token"].split(".")
    body = f"{session_id}.{generation}.{'A' * 43}"
    assert refresh(client, f"{body}.{mac_under(SECRET, body)}").status_code == 401
    assert client.get("/api/users/me", headers=bearer(pair["token"])).status_code == 200
    assert refresh(client, f"{body}.{mac_under('another key' * 4, body)}").status_code == 401
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_a_cached_profile_speaks_only_for_the_user_of_its_key(app, client, make_user, redis_client, prefix):
    """The profile snapshot is a bare JSON array; one whose id is not the user of its key (a snapshot written by
    another release's field order, or by anything that can write to Redis) becomes the caller's identity: GET
    /users/me answers with the other user, and PATCH /users/me writes the other user's row."""
    mine, other_id = make_user(PHONE), make_user(OTHER)
    pair = login(client, PHONE)
    assert client.get("/api/users/me", headers=bearer(pair["token"])).status_code == 200  # caches the snapshot
    snapshot = json.loads(redis_client.get(f"{prefix}auth:profile:{mine}"))
    snapshot[1] = other_id  # [layout, id, …]
    redis_client.set(f"{prefix}auth:profile:{mine}", json.dumps(snapshot))
    changed = client.patch("/api/users/me", json={"nickname": "renamed"}, headers=bearer(pair["token"]))
    assert changed.status_code == 200
    assert changed.get_json()["data"]["id"] == mine, "PATCH /users/me changed another user's row"


def test_a_refresh_token_of_a_generation_redis_lost_is_no_theft(app, client, make_user, redis_client, prefix):
    """A refresh is not waited for on a replica (only a login is), so a failover, or a restore from a backup, can
    lose the last refresh of a session while its client holds the pair it gave. That client's refresh token is one
    the server issued, of a generation the session has not reached: the refresh takes it for a retired one, ends
    the session and records a refresh_reuse (theft) event, for every session refreshed since the lost write."""
    make_user(PHONE)
    first = login(client, PHONE)
    session = f"{prefix}auth:session:{first['token'].split('.')[0]}"
    before, ttl = redis_client.hgetall(session), redis_client.pttl(session)
    second = refresh(client, first["refresh_token"]).get_json()["data"]
    redis_client.delete(session)  # the replica that is now the primary never saw that refresh
    redis_client.hset(session, mapping=before)
    redis_client.pexpire(session, ttl)
    assert refresh(client, second["refresh_token"]).status_code == 401
    events = client.get("/api/auth/events", headers=bearer(first["token"]))
    assert events.status_code == 200, "the session the lost write left was ended as a theft"
    assert "refresh_reuse" not in [e["type"] for e in events.get_json()["data"]["items"]]


@pytest.mark.parametrize("bend", [
    lambda s, g, x: f"{s}.0.{x}", lambda s, g, x: f"{s}.0{g}.{x}", lambda s, g, x: f"{s}.-{g}.{x}",
    lambda s, g, x: f"{s}.+{g}.{x}", lambda s, g, x: f"{s}.\u0661.{x}", lambda s, g, x: f"{s}.{'9' * 20}.{x}",
    lambda s, g, x: f"{s}.{g}.{x}".upper(), lambda s, g, x: f"{s}.{g}.{x}.", lambda s, g, x: f".{s}.{g}.{x}",
    lambda s, g, x: f"{s}..{g}.{x}", lambda s, g, x: f"{s}.{g}.{x} x", lambda s, g, x: f"{s[:15]}*.{g}.{x}",
    lambda s, g, x: f"{s[:15]}:.{g}.{x}", lambda s, g, x: f"{s[:15]}?.{g}.{x}", lambda s, g, x: f"{s}.{g}.{x}" * 50,
    lambda s, g, x: f"{s}.{g}.{x[:-1]}é", lambda s, g, x: x,
])
def test_bent_tokens_are_refused_and_end_nothing(app, client, make_user, bend):
    """Probes that held: no bend of a live pair passes as an access or a refresh token, or ends the session."""
    make_user(PHONE)
    pair = login(client, PHONE)
    for token in (pair["token"], pair["refresh_token"]):
        bent = bend(*token.split(".", 2))  # session id, generation, the rest
        assert client.get("/api/users/me", headers=bearer(bent)).status_code == 401
        assert refresh(client, bent).status_code in (400, 401)
    assert client.get("/api/users/me", headers=bearer(pair["token"])).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 200


def test_a_refresh_racing_logout_all_leaves_no_live_pair_and_no_partial_session(app, client, make_user, redis_client,
                                                                               prefix):
    """Probe that held: a thief's refresh racing the owner's logout-all never yields a pair that still works, nor
    a session hash without its fields (the refresh keeps the session id, so ending it catches the new pair)."""
    make_user(PHONE)
    with ThreadPoolExecutor(2) as racers:  # the same two threads every round: each keeps one Redis connection
        for _ in range(10):
            owner, thief = login(client, PHONE), login(client, PHONE)
            refreshed = racers.submit(lambda: refresh(app.test_client(), thief["refresh_token"]))
            ended = racers.submit(lambda: app.test_client().post("/api/auth/logout-all", headers=bearer(owner["token"])))
            assert ended.result().status_code == 200
            if refreshed.result().status_code == 200:
                token = refreshed.result().get_json()["data"]["token"]
                assert client.get("/api/users/me", headers=bearer(token)).status_code == 401
            assert list(redis_client.scan_iter(match=f"{prefix}auth:session:*")) == []
