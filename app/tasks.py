"""@async_task: background work, on the in-process pool or on Celery workers (``jobs.backend``).

(The original project's ``@async``; that word is reserved now. app.decorators re-exports it.)

The same rules hold on both backends, so code that works in development works in production:

- arguments must be JSON: a call with anything else fails at once with TypeError, and the task receives what a
  JSON round trip gives (tuples become lists, keys strings) even on the thread backend;
- the task runs inside the app context, with the request id of the request that started it in its log lines;
- raising :class:`TemporaryError` (or meeting a Redis or database outage) tries the task again after an
  exponential backoff (1 s, 2 s, 4 s … up to ``jobs.retry_backoff_max``), ``jobs.max_retries`` times; the final
  failure is logged at ERROR. Any other exception is logged with its traceback and not retried.

The thread backend (development, tests) keeps accepted work in the process: a crash loses it. The Celery backend
(app/jobs.py) keeps it in Redis until a worker has finished it (late acknowledgement), so it survives a worker's
crash, a deploy and a restart; a task may then run twice, so tasks must be idempotent (mail is: app/services/mail.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, cast

from flask import Flask, current_app, g

from app.config import settings_of
from app.errors import OUTAGES
from app.extensions import db, tasks
from app.request_id import current_request_id

log = logging.getLogger(__name__)

registry: dict[str, Callable[..., Any]] = {}


class TemporaryError(Exception):
    """Raise from a task to have it tried again later (an SMTP server that is down, a lock another worker holds)."""


RETRYABLE: tuple[type[BaseException], ...] = (TemporaryError, *OUTAGES)


class AsyncTask(Protocol):
    task_name: str  # the name Celery knows it by: module.function

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def async_task(func: Callable[..., Any]) -> AsyncTask:
    """Run ``func`` in the background; the call returns a Future (thread backend) or Celery's AsyncResult."""
    name = f"{func.__module__}.{func.__qualname__}"
    registry[name] = func

    @wraps(func)
    def submit(*args: Any, **kwargs: Any) -> Any:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        arguments = as_json(name, args, kwargs)
        request_id = current_request_id()
        enqueue = app.extensions.get("enqueue")  # the Celery backend's (app/jobs.py), set by create_app
        if enqueue is not None:
            return enqueue(app, name, request_id, *arguments)
        return tasks.pool.submit(lambda: _run_here(app, name, request_id, *arguments))

    submit.task_name = name  # type: ignore[attr-defined]
    return cast(AsyncTask, submit)


def as_json(name: str, args: tuple, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """``args`` and ``kwargs`` after a JSON round trip; TypeError naming the task when they are not JSON."""
    try:
        return json.loads(json.dumps([list(args), kwargs], allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"@async_task {name}: arguments must be JSON values ({exc})") from None


def backoff(tries: int, app: Flask) -> float:
    """Seconds to wait before try ``tries + 1``: 1, 2, 4 … capped at ``jobs.retry_backoff_max``."""
    return float(min(2 ** tries, settings_of(app).jobs.retry_backoff_max))


def attempt(name: str, args: list, kwargs: dict[str, Any], tries: int, app: Flask) -> tuple[bool, Any]:
    """Run task ``name`` once in the current app context: ``(True, result)``, or ``(False, error)`` when it failed
    in a way worth another try and tries remain. A final failure is logged and raised."""
    try:
        return True, registry[name](*args, **kwargs)
    except RETRYABLE as exc:
        db.session.remove()  # a connection that failed must not carry over into the next try
        if tries >= settings_of(app).jobs.max_retries:
            log.error("task %s failed for good after %d tries: %s: %s", name, tries + 1, type(exc).__name__, exc)
            raise
        log.warning("task %s failed (%s: %s); try %d in %.0f s", name, type(exc).__name__, exc, tries + 2,
                    backoff(tries, app))
        return False, exc
    except Exception:
        log.exception("task %s failed", name)
        raise


def _run_here(app: Flask, name: str, request_id: str | None, args: list, kwargs: dict[str, Any]) -> Any:
    with app.app_context():
        g.request_id = request_id
        tries = 0
        while True:
            done, outcome = attempt(name, args, kwargs, tries, app)
            if done:
                return outcome
            time.sleep(backoff(tries, app))
            tries += 1
