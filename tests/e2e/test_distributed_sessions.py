"""Two server processes sharing one Redis and one database accept and revoke each other's tokens."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.e2e
PHONE, PASSWORD = "+8613800138000", "correct horse battery"


@pytest.fixture
def two_servers(live_server, real_redis_settings, test_settings):
    redis = real_redis_settings["redis"]
    env = {"REDIS_URL": redis["url"], "APP_REDIS__PREFIX": redis["prefix"]}
    first = live_server(env=env)
    second = live_server(env=env)
    from app import create_app

    app = create_app({**test_settings, **real_redis_settings})
    with app.app_context():
        from app.extensions import db
        from app.services.users import create_user

        create_user(PHONE, PASSWORD, "n")
        db.engine.dispose()
    return first.url, second.url


def me(url: str, token: str) -> int:
    return requests.get(f"{url}/api/users/me", headers={"token": token}, timeout=5).status_code


def test_a_token_from_one_process_works_and_dies_on_the_other(two_servers):
    first, second = two_servers
    response = requests.post(f"{first}/api/auth/login", json={"account": PHONE, "password": PASSWORD}, timeout=10)
    token = response.json()["data"]["token"]
    assert (me(first, token), me(second, token)) == (200, 200)
    assert requests.post(f"{second}/api/auth/logout", headers={"token": token}, timeout=5).status_code == 200
    assert (me(first, token), me(second, token)) == (401, 401)
