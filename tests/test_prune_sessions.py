"""The session index clean-up: `sessions.prune_session_index()` and `python manage.py prune-sessions` remove the ids
of expired sessions from their users' indexes, never a live one, also while users log in."""

from __future__ import annotations

import subprocess
import threading

import pytest

from app.extensions import redis_store
from app.services.sessions import prune_session_index
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge, run_manage, wait_until

PHONES = [f"+86138001380{n:02d}" for n in range(4)]


def manage(database_url: str, *args: str, redis: dict | None = None) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` on this test's database, and on its Redis namespace when given (else memory://)."""
    env = {"DATABASE_URL": database_url}
    if redis:
        env.update({"REDIS_URL": redis["url"], "APP_REDIS__PREFIX": redis["prefix"]})
    return run_manage(*args, env=env)


def index(app, user_id: int) -> set[str]:
    with app.app_context():
        return set(redis_store.zrange(redis_store.key("auth", "index", str(user_id)), 0, -1))


def expire_sessions(app, session_ids) -> None:
    """Let these sessions' hashes expire, as Redis does when a session's lifetime runs out."""
    with app.app_context():
        for session_id in session_ids:
            assert redis_store.pexpire(redis_store.key("auth", "session", session_id), 1)


def gone(app, session_ids) -> bool:
    with app.app_context():
        return not any(redis_store.exists(redis_store.key("auth", "session", s)) for s in session_ids)


@pytest.fixture(params=["memory", "real"])
def redis_app(request, make_app, accounts_settings, redis_namespace):
    """An app on memory:// and one on a real Redis (its own prefix)."""
    if request.param == "memory":
        return make_app(deep_merge(accounts_settings, {"redis": {"url": "memory://"}}))
    return make_app(deep_merge(accounts_settings, request.getfixturevalue("real_redis_settings")))


def test_expired_sessions_leave_the_index_and_live_ones_stay(redis_app, make_user):
    app, client = redis_app, redis_app.test_client()
    users = [make_user(phone) for phone in PHONES[:2]]
    tokens = {phone: [login(client, phone)["token"] for _ in range(3)] for phone in PHONES[:2]}
    first, second = (index(app, user) for user in users)
    assert len(first) == len(second) == 3
    dead = sorted(first)[:2] + sorted(second)[:1]
    expire_sessions(app, dead)
    wait_until(lambda: gone(app, dead))

    with app.app_context():
        assert prune_session_index(batch=2) == 3  # batches smaller than an index: ZSCAN in several steps
        assert prune_session_index() == 0
    assert index(app, users[0]) == first - set(dead)
    assert index(app, users[1]) == second - set(dead)
    live = [t for phone in PHONES[:2] for t in tokens[phone]
            if client.get("/api/users/me", headers=bearer(t)).status_code == 200]
    assert len(live) == 3  # the prune ended nothing


def test_a_user_whose_sessions_all_expired_has_no_index_left(redis_app, make_user):
    app, client = redis_app, redis_app.test_client()
    user = make_user(PHONES[0])
    login(client, PHONES[0])
    ids = index(app, user)
    expire_sessions(app, ids)
    wait_until(lambda: gone(app, ids))
    with app.app_context():
        assert prune_session_index() == 1
        assert not redis_store.exists(redis_store.key("auth", "user", str(user)))


def test_logins_while_pruning_keep_every_live_session_in_the_index(make_app, accounts_settings, real_redis_settings,
                                                                 make_user):
    """Logins in threads while the prune runs again and again over sets that hold expired ids too: every session
    opened is in its user's index at the end, and every expired id is gone."""
    app = make_app(deep_merge(deep_merge(accounts_settings, real_redis_settings), {"auth": {"max_sessions": 200}}))
    users = {phone: make_user(phone) for phone in PHONES}
    seed = app.test_client()
    for phone in PHONES:
        for _ in range(5):
            login(seed, phone)
    dead = set().union(*(index(app, user) for user in users.values()))
    expire_sessions(app, dead)
    wait_until(lambda: gone(app, dead))

    opened: dict[str, list[str]] = {phone: [] for phone in PHONES}
    stop, removed, errors = threading.Event(), [], []

    def log_in(phone: str) -> None:
        client = app.test_client()
        try:
            for _ in range(8):
                opened[phone].append(login(client, phone)["token"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    def prune() -> None:
        with app.app_context():
            while not stop.is_set():
                removed.append(prune_session_index(batch=3))

    pruner = threading.Thread(target=prune)
    pruner.start()
    loggers = [threading.Thread(target=log_in, args=(phone,)) for phone in PHONES for _ in range(2)]
    for thread in loggers:
        thread.start()
    for thread in loggers:
        thread.join()
    stop.set()
    pruner.join()
    assert not errors, errors

    assert sum(removed) == len(dead) == 20  # each expired id removed once, whatever the interleaving
    client = app.test_client()
    for phone, user in users.items():
        assert len(opened[phone]) == 16
        live = index(app, user)
        assert len(live) == 16 and not live & dead
        for token in opened[phone]:
            assert client.get("/api/users/me", headers=bearer(token)).status_code == 200


@pytest.fixture
def shared(make_app, accounts_settings, real_redis_settings, make_user):
    app = make_app(deep_merge(accounts_settings, real_redis_settings))
    return app, app.test_client(), real_redis_settings["redis"]


def test_the_command_removes_expired_sessions_from_the_index_on_the_servers_redis(shared, make_user, database_url):
    app, client, redis_settings = shared
    user = make_user(PHONES[0])
    token = login(client, PHONES[0])["token"]
    ids = index(app, user)
    login(client, PHONES[0])
    expire_sessions(app, ids)
    wait_until(lambda: gone(app, ids))

    done = manage(database_url, "prune-sessions", redis=redis_settings)
    assert (done.returncode, done.stdout.strip()) == (0, "1 expired session(s) removed from the index"), done.stderr
    assert len(index(app, user)) == 1
    again = manage(database_url, "prune-sessions", redis=redis_settings)
    assert again.stdout.strip() == "0 expired session(s) removed from the index"
    assert client.get("/api/users/me", headers=bearer(token)).status_code == 401  # the expired one


def test_the_command_refuses_a_memory_redis_it_cannot_reach(make_app, accounts_settings, database_url):
    make_app(accounts_settings)
    refused = manage(database_url, "prune-sessions")
    assert refused.returncode != 0 and "memory://" in refused.stderr, refused.stderr
    assert "removed" not in refused.stdout
