"""@async_task: background work on a bounded pool, with the app context and the request id carried over.

(The original project's ``@async``; that word is reserved now. app.decorators re-exports it.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from functools import wraps
from typing import Any

from flask import current_app, g

from app.extensions import tasks
from app.request_id import current_request_id

log = logging.getLogger(__name__)


def async_task(func: Callable[..., Any]) -> Callable[..., Future]:
    """Run ``func`` on the app's bounded task pool with the app context pushed; returns a Future.

    The task keeps the request id of the request that started it; an exception is logged with its
    traceback and that id, and stays in the Future. tornado_server.py waits for accepted tasks on SIGTERM.
    """

    @wraps(func)
    def submit(*args: Any, **kwargs: Any) -> Future:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        request_id = current_request_id()

        def run() -> Any:
            with app.app_context():
                g.request_id = request_id
                try:
                    return func(*args, **kwargs)
                except Exception:
                    log.exception("task %s failed", func.__name__)
                    raise

        return tasks.pool.submit(run)

    return submit
