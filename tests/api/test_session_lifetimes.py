"""Session lifetimes: a session ends ``auth.idle_timeout`` seconds after its last request or refresh, and
``auth.session_max_age`` seconds after its login whatever happens; no token outlives that maximum age."""

from __future__ import annotations

import time

from app.services.users import create_user
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge, wait_until

PHONE = "+8613800138000"
IDLE = 2  # seconds: auth.idle_timeout of the idle tests
MAX_AGE = 3  # seconds: auth.session_max_age of the maximum-age tests (auth.token_ttl stays 7200)


def client_of(make_app, accounts_settings, **auth):
    """A client of an app with these ``auth`` settings, whose database holds the account PHONE."""
    app = make_app(deep_merge(accounts_settings, {"auth": auth}))
    with app.app_context():
        create_user(PHONE, "correct horse battery", "n")
    return app.test_client()


def me(client, token):
    return client.get("/api/users/me", headers=bearer(token))


def refresh(client, refresh_token):
    return client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


def sessions(client, token) -> list[dict]:
    response = client.get("/api/auth/sessions", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def current_session_id(client, token) -> str:
    return next(s["id"] for s in sessions(client, token) if s["current"])


def wait_idle(since: float, seconds: float = IDLE) -> None:
    """Let a session that was last used at ``since`` stay unused just past ``seconds`` (polling it would use it)."""
    time.sleep(max(0.0, since + seconds + 0.2 - time.time()))


def assert_refused(response):
    assert response.status_code == 401, response.get_json()
    assert response.headers.get("WWW-Authenticate")


# --- idle timeout ----------------------------------------------------------------------------------------------


def test_an_unused_session_ends_at_the_token_check(make_app, accounts_settings):
    client = client_of(make_app, accounts_settings, idle_timeout=IDLE)
    idle = login(client, PHONE)
    idle_id = current_session_id(client, idle["token"])
    wait_idle(time.time())

    assert_refused(me(client, idle["token"]))
    assert_refused(refresh(client, idle["refresh_token"]))
    fresh = login(client, PHONE)["token"]
    assert idle_id not in [s["id"] for s in sessions(client, fresh)]


def test_an_unused_session_ends_at_the_refresh(make_app, accounts_settings):
    client = client_of(make_app, accounts_settings, idle_timeout=IDLE)
    idle = login(client, PHONE)
    wait_idle(time.time())

    assert_refused(refresh(client, idle["refresh_token"]))  # first: the refresh itself sees the idle time
    assert_refused(me(client, idle["token"]))
    assert [s["current"] for s in sessions(client, login(client, PHONE)["token"])] == [True]


def test_a_session_in_use_outlives_the_idle_timeout_while_an_unused_one_leaves_the_list(make_app, accounts_settings):
    client = client_of(make_app, accounts_settings, idle_timeout=IDLE)
    idle, busy = login(client, PHONE), login(client, PHONE)
    last_used = time.time()  # the session is last seen during the next request, not before it
    idle_id = current_session_id(client, idle["token"])

    wait_until(lambda: idle_id not in [s["id"] for s in sessions(client, busy["token"])], timeout=IDLE + 10)
    assert time.time() - last_used >= IDLE  # not before its time
    until = time.time() + 2 * IDLE  # the busy session, used every 0.3 s, lives on past the timeout
    while time.time() < until:
        assert me(client, busy["token"]).status_code == 200
        time.sleep(0.3)

    assert_refused(me(client, idle["token"]))
    assert_refused(refresh(client, idle["refresh_token"]))
    assert [s["current"] for s in sessions(client, busy["token"])] == [True]


def test_refreshing_counts_as_use(make_app, accounts_settings):
    client = client_of(make_app, accounts_settings, idle_timeout=IDLE)
    pair = login(client, PHONE)
    until = time.time() + 3 * IDLE
    while time.time() < until:  # no other request: only refreshes, each well within the idle timeout
        time.sleep(0.4)
        response = refresh(client, pair["refresh_token"])
        assert response.status_code == 200, response.get_json()
        pair = response.get_json()["data"]
    assert me(client, pair["token"]).status_code == 200


# --- maximum age ----------------------------------------------------------------------------------------------


def test_login_tokens_do_not_outlive_the_maximum_age(make_app, accounts_settings):
    client = client_of(make_app, accounts_settings, session_max_age=MAX_AGE)
    pair = login(client, PHONE)
    assert 0 < pair["expires_in"] <= MAX_AGE
    assert 0 < pair["refresh_expires_in"] <= MAX_AGE


def test_a_session_in_constant_use_ends_at_its_maximum_age(make_app, accounts_settings):
    client = client_of(make_app, accounts_settings, session_max_age=MAX_AGE)
    before = time.time()
    pair = login(client, PHONE)
    after = time.time()

    wait_until(lambda: me(client, pair["token"]).status_code == 401, timeout=MAX_AGE + 10, interval=0.1)
    ended = time.time()
    assert before + MAX_AGE <= ended <= after + MAX_AGE + 1.5, (ended - before)
    assert_refused(refresh(client, pair["refresh_token"]))


def test_refresh_never_extends_a_session_past_its_maximum_age(make_app, accounts_settings):
    """Each refresh's ``expires_in`` and ``refresh_expires_in`` are at most what the session has left, down to its
    last second; then the refresh is refused and the last pair is dead."""
    client = client_of(make_app, accounts_settings, session_max_age=MAX_AGE)
    before = time.time()
    pair = login(client, PHONE)
    after = time.time()  # the session began between before and after: it ends by after + MAX_AGE
    last_answer_at, granted = 0.0, []
    while True:
        asked = time.time()
        response = refresh(client, pair["refresh_token"])
        if response.status_code != 200:
            break
        pair, last_answer_at = response.get_json()["data"], asked
        left = after + MAX_AGE - asked  # no less than what the session had left when it answered
        granted.append((round(asked - after, 2), pair["expires_in"], pair["refresh_expires_in"]))
        assert 0 <= pair["expires_in"] <= left and 0 <= pair["refresh_expires_in"] <= left, granted
        time.sleep(0.25)
    refused = time.time()

    assert_refused(response)
    assert refused >= before + MAX_AGE, granted  # not before its maximum age
    assert last_answer_at >= after + MAX_AGE - 1.0, granted  # the refreshes went on to its last second
    assert_refused(me(client, pair["token"]))
    assert_refused(refresh(client, pair["refresh_token"]))
