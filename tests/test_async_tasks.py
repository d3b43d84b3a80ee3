"""@async_task's rules on both backends: JSON arguments only, retries with backoff, a final failure at ERROR."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from app.config import settings_of
from app.tasks import TemporaryError, async_task
from tests.support import deep_merge, wait_until

calls: list = []


@async_task
def remember(value, *, tag="") -> str:
    calls.append((value, tag))
    return "done"


@async_task
def flaky(fail_times: int) -> int:
    calls.append(fail_times)
    if len(calls) <= fail_times:
        raise TemporaryError("not yet")
    return len(calls)


@pytest.fixture(autouse=True)
def fresh_calls():
    calls.clear()


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), float("nan")])
def test_a_task_given_a_value_that_is_not_json_fails_at_the_call_on_the_thread_backend(make_app, value):
    app = make_app()
    with app.app_context(), pytest.raises(TypeError, match="remember: arguments must be JSON"):
        remember(value)
    assert calls == []


def test_a_task_given_a_value_that_is_not_json_fails_at_the_call_on_the_celery_backend(make_app, real_redis_settings):
    app = make_app(deep_merge(real_redis_settings, {"jobs": {"backend": "celery"}}))
    client = redis.Redis.from_url(real_redis_settings["redis"]["url"])
    queue = f"{real_redis_settings['redis']['prefix']}" * 2 + "jobs"
    with app.app_context():
        with pytest.raises(TypeError, match="remember: arguments must be JSON"):
            remember({"when": object()})
        assert client.llen(queue) == 0  # nothing was published
        remember([1, 2], tag="ok")  # a JSON value is published
    assert client.llen(queue) == 1


def test_the_thread_backend_gives_the_task_what_a_json_round_trip_gives(make_app):
    app = make_app()
    with app.app_context():
        assert remember((1, "二"), tag={"k": (3,)}).result(5) == "done"
    assert calls == [([1, "二"], {"k": [3]})]


def test_a_temporary_failure_is_retried_with_backoff(make_app):
    app = make_app({"jobs": {"max_retries": 3}})
    with app.app_context():
        assert flaky(2).result(10) == 3  # failed twice (waiting 1 s, then 2 s), then done


@pytest.fixture
def one_retry_app(make_app):
    """Made before the test body: making an app configures logging, which replaces pytest's capturing handler."""
    return make_app({"jobs": {"max_retries": 1}})


def test_the_last_failure_is_logged_at_error_with_the_request_id(one_retry_app, caplog):
    app = one_retry_app
    caplog.set_level(logging.WARNING, logger="app.tasks")
    with app.test_request_context(headers={"X-Request-ID": "req-final-failure"}), pytest.raises(TemporaryError):
        flaky(10).result(10)
    assert len(calls) == 2  # the first try and one retry
    [final] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "failed for good after 2 tries" in final.getMessage()
    log_file = Path(settings_of(app).log.file)
    wait_until(lambda: "ERROR [" in log_file.read_text() and "[req-final-failure] task test_async_tasks.flaky failed for good"
               in log_file.read_text())  # the line names the request that started the task
