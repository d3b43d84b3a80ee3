"""The Celery backend of @async_task (``jobs.backend = celery``): Redis broker, late acknowledgement, retries.

``celery -A app worker`` and ``celery -A app beat`` find the Celery app through ``app.celery`` (app/__init__.py
builds it on first use, with a Flask app of the same settings). A web process builds one only when it enqueues.

What a worker guarantees (docs/operations.md, "Background jobs"): a task is acknowledged after it ran, so a worker
killed mid-task (``kill -9``, a reboot) leaves it in Redis, and another worker runs it once
``jobs.visibility_timeout`` has passed; a task is therefore run at least once, and may run twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from flask import Flask, g
from kombu.exceptions import OperationalError as BrokerError

from app import periodic
from app.config import PROJECT_DIR, settings_of
from app.errors import ServiceUnavailable
from app.redis_urls import celery_broker
from app.tasks import attempt, backoff, registry

log = logging.getLogger(__name__)

PERIODIC = {  # beat's schedule: task name → seconds between runs
    periodic.prune_sessions.task_name: 3600,
    periodic.prune_events.task_name: 24 * 3600,
    periodic.prune_files.task_name: 24 * 3600,
}
PING_CACHE_SECONDS = 10.0


def celery_of(app: Flask) -> Celery:
    """This Flask app's Celery app, made on first use."""
    celery = app.extensions.get("celery")
    if celery is None:
        celery = app.extensions["celery"] = _make_celery(app)
    return celery


def enqueue(app: Flask, name: str, request_id: str | None, args: list, kwargs: dict[str, Any]) -> Any:
    """Publish task ``name`` to the broker; ServiceUnavailable (503) when Redis cannot take it."""
    try:
        return celery_of(app).tasks[name].apply_async((request_id, args, kwargs))
    except BrokerError as exc:
        log.error("dependency unavailable: job broker: %s", exc)
        raise ServiceUnavailable() from exc


def _broker_settings(app: Flask) -> dict[str, Any]:
    settings = settings_of(app)
    visibility = settings.jobs.visibility_timeout
    broker = celery_broker(settings.redis.url)
    broker["broker_transport_options"] = {
        **broker.get("broker_transport_options", {}),
        "global_keyprefix": settings.redis.prefix,  # every broker key under the app's prefix, as our own are
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1, min(10, visibility // 4)),  # look for a dead worker's tasks this often
        "unacked_restore_throttle": 1,
        "socket_timeout": settings.redis.socket_timeout,
        "socket_connect_timeout": settings.redis.connect_timeout,
    }
    return broker


def _make_celery(app: Flask) -> Celery:
    settings = settings_of(app)
    celery = Celery(settings.app.name, set_as_current=False, task_cls=_FlaskTask)
    celery.conf.update(
        **_broker_settings(app),
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,  # acknowledged after the task ran: a worker that dies leaves it to another
        task_reject_on_worker_lost=True,  # a pool process killed mid-task: back to the queue, not failed
        worker_prefetch_multiplier=1,  # a worker holds no more than it runs
        task_default_queue=f"{settings.redis.prefix}jobs",
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,  # log lines go through logging.ini, with the request id
        worker_redirect_stdouts=False,
        beat_schedule={name.rsplit(".", 1)[1]: {"task": name, "schedule": float(every)}
                       for name, every in PERIODIC.items()},
        beat_schedule_filename=str(PROJECT_DIR / "instance" / "celerybeat-schedule"),
        timezone="UTC",
    )
    celery.flask_app = app
    for name in registry:
        celery.task(name=name, bind=True, max_retries=None)(_run_task)  # jobs.max_retries is enforced by attempt()
    return celery


class _FlaskTask(Task):
    """Every task runs in the Flask app's context (as a request does), with the request id it was given."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.app.flask_app.app_context():
            return super().__call__(*args, **kwargs)


def _run_task(self: Task, request_id: str | None, args: list, kwargs: dict[str, Any]) -> Any:
    app: Flask = self.app.flask_app
    g.request_id = request_id
    tries = self.request.retries
    done, outcome = attempt(self.name, args, kwargs, tries, app)
    if done:
        return outcome
    try:
        raise self.retry(exc=outcome, countdown=backoff(tries, app))
    except Reject as refused:  # the retry could not be published (Redis down): Celery would drop the message
        raise Reject(refused.reason, requeue=True) from None  # back to the queue, or left unacknowledged


def jobs_status(app: Flask) -> Callable[[], str]:
    """Start finding out whether a Celery worker answers; returns the function that gives the answer: ``"ok"`` when
    one answered a ping within half a second, else ``"down"``.

    The ping runs on a thread of its own, beside the health check's database and Redis checks (a hung database and
    no worker still answer within 2 s). The answer is kept for 10 s per process, and one thread at a time pings:
    the others meanwhile get the last answer, so probes that call the health check often add no load.
    """
    checked_at, status = app.extensions.get("jobs_ping", (-PING_CACHE_SECONDS, "down"))
    if time.monotonic() - checked_at < PING_CACHE_SECONDS or not _pinging.acquire(blocking=False):
        return lambda: status
    pinger = threading.Thread(target=_ping, args=(app,), name="jobs-ping", daemon=True)
    pinger.start()

    def answer() -> str:
        pinger.join()
        return str(app.extensions["jobs_ping"][1])

    return answer


def _ping(app: Flask) -> None:
    status = "down"
    try:
        status = "ok" if celery_of(app).control.ping(timeout=0.5, limit=1) else "down"
    except Exception as exc:  # the broker itself is down: the redis check says so
        log.warning("health: job workers unreachable: %s", exc)
    finally:
        app.extensions["jobs_ping"] = (time.monotonic(), status)
        _pinging.release()


_pinging = threading.Lock()
