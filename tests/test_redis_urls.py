"""REDIS_URL forms (app/redis_urls.py): redis+sentinel:// parsed strictly, its Celery broker, and what the
configuration checks make of it."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import pytest

from app.config import PROJECT_DIR, ConfigError, load_configs
from app.config.redis_url import SentinelURL, parse_sentinel
from app.redis_urls import celery_broker
from tests.support import free_port, timed

SECRET = "p@ss:w/rd"  # characters that need escaping in a URL
ESCAPED = "p%40ss%3Aw%2Frd"


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://10.0.0.1:26379/mymaster", SentinelURL((("10.0.0.1", 26379),), "mymaster")),
    ("redis+sentinel://s1:26379,s2:26380,s3:26381/cache.main/3",
     SentinelURL((("s1", 26379), ("s2", 26380), ("s3", 26381)), "cache.main", 3)),
    (f"redis+sentinel://:{ESCAPED}@s1:26379,[::1]:26380/mymaster/0",
     SentinelURL((("s1", 26379), ("::1", 26380)), "mymaster", 0, None, SECRET)),
    ("REDIS+SENTINEL://app:pw@s1:1/m", SentinelURL((("s1", 1),), "m", 0, "app", "pw")),
])
def test_a_sentinel_url_names_its_sentinels_service_database_and_password(url, expected):
    assert parse_sentinel(url) == expected


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+sentinel://s1:26379", "must name the service"),
    ("redis+sentinel://s1:26379/", "must name the service"),
    ("redis+sentinel://s1:26379/my master", "must name the service"),
    ("redis+sentinel:///mymaster", "names no sentinel host"),
    ("redis+sentinel://s1:26379,,s2:26379/mymaster", "names no sentinel host"),
    ("redis+sentinel://s1/mymaster", "'s1' is not host:port"),
    ("redis+sentinel://s1:port/mymaster", "'s1:port' is not host:port"),
    ("redis+sentinel://s1:70000/mymaster", "'s1:70000' is not host:port"),
    ("redis+sentinel://s1:0/mymaster", "'s1:0' is not host:port"),
    ("redis+sentinel://s1:26379/mymaster/x", "database after the service must be a number"),
    ("redis+sentinel://s1:26379/mymaster/0/1", "database after the service must be a number"),
    ("redis+sentinel://s1:26379/mymaster?ssl=1", "takes no query or fragment"),
    (f"redis+sentinel://{SECRET}@s1:26379/mymaster", "credentials must be"),
    ("redis+sentinel://user@s1:26379/mymaster", "credentials must be"),
    ("redis+sentinel://:@s1:26379/mymaster", "credentials must be"),
])
def test_a_malformed_sentinel_url_is_refused_by_name(url, problem):
    with pytest.raises(ConfigError, match="Redis Sentinel URL") as error:
        parse_sentinel(url)
    assert problem in str(error.value)
    assert "redis+sentinel://[:password@]host:port" in str(error.value)  # the form it should have


def test_the_password_stays_out_of_the_error_and_the_repr():
    for url in (f"redis+sentinel://:{SECRET}x@s1:26379/mymaster/zero", f"redis+sentinel://:{SECRET}@s1:nope/m"):
        with pytest.raises(ConfigError) as error:
            parse_sentinel(url)
        assert "ss:w" not in str(error.value) and "ss%3Aw" not in str(error.value)
    assert "ss:w" not in repr(parse_sentinel(f"redis+sentinel://:{ESCAPED}@s1:1/m"))


def test_celery_gets_kombus_sentinel_form_with_the_service_and_the_password():
    assert celery_broker(f"redis+sentinel://:{ESCAPED}@s1:26379,s2:26380/mymaster/2") == {
        "broker_url": f"sentinel://:{ESCAPED}@s1:26379/2;sentinel://:{ESCAPED}@s2:26380/2",
        "broker_transport_options": {"master_name": "mymaster", "sentinel_kwargs": {"password": SECRET}},
    }
    assert celery_broker("redis+sentinel://[::1]:26379/m") == {
        "broker_url": "sentinel://[::1]:26379/0", "broker_transport_options": {"master_name": "m"}}


def test_celery_gets_a_plain_redis_url_as_it_is():
    assert celery_broker("redis://:pw@r:6379/1") == {"broker_url": "redis://:pw@r:6379/1",
                                                      "broker_transport_options": {}}


@pytest.fixture
def project(tmp_path):
    shutil.copy(PROJECT_DIR / "config_default.py", tmp_path / "config_default.py")
    (tmp_path / "config_override.py").write_text("configs = {}\n")
    return tmp_path


PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": "s" * 40, "APP_APP__PUBLIC_URL": "https://api.example.com",
              "APP_SMS__GATEWAY": "file"}


def test_production_accepts_a_sentinel_url_as_a_real_redis(project):
    url = f"redis+sentinel://:{ESCAPED}@s1:26379,s2:26379,s3:26379/mymaster/0"
    assert load_configs(environ={**PRODUCTION, "REDIS_URL": url}, directory=project).redis.url == url


def test_a_malformed_sentinel_url_stops_the_start_without_its_password(project):
    with pytest.raises(ConfigError, match="sentinel number 1 is not host:port") as error:
        load_configs(environ={"REDIS_URL": f"redis+sentinel://:{ESCAPED}@s1/mymaster"}, directory=project)
    assert ESCAPED not in str(error.value) and SECRET not in str(error.value)


def test_an_unknown_redis_scheme_stops_the_start(project):
    with pytest.raises(ConfigError, match="must start with memory://, redis://"):
        load_configs(environ={"REDIS_URL": "sentinel://s1:26379"}, directory=project)


def test_a_negative_replica_wait_stops_the_start(project):
    with pytest.raises(ConfigError, match=r"redis\.replica_wait_ms must be 0"):
        load_configs(environ={"APP_REDIS__REPLICA_WAIT_MS": "-1"}, directory=project)


@pytest.fixture
def hung_ports() -> Iterator[list[int]]:
    """Three listening sockets that never answer (the kernel completes the handshake; nobody reads): hung sentinels."""
    sockets = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sockets.append(sock)
    yield [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("sentinels", ["hung", "refusing"])
def test_with_no_sentinel_answering_a_signed_in_request_is_503_within_two_seconds(make_app, hung_ports, sentinels):
    ports = hung_ports if sentinels == "hung" else [free_port() for _ in range(3)]
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/mymaster"
    client = make_app({"redis": {"url": url}}).test_client()
    for _ in range(2):  # the first and a later request (no connection was left half made)
        answer, seconds = timed(client.get, "/api/users/me", headers={"token": "t" * 43})
        assert answer.status_code == 503 and seconds < 2.0, (answer.status_code, seconds)
