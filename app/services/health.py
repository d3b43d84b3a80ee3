"""Readiness: can this process reach its database and its Redis?"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from sqlalchemy import text

from app.config import settings_of
from app.errors import OUTAGES, ServiceUnavailable
from app.extensions import db, redis_store
from app.i18n import _
from app.version import __version__, build_info

log = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except OUTAGES as exc:
        log.warning("health: database unreachable: %s", exc)
        db.session.rollback()
        return False


def _redis_ok() -> bool:
    try:
        return bool(redis_store.ping())
    except OUTAGES as exc:
        log.warning("health: redis unreachable: %s", exc)
        return False


def _jobs_status() -> Callable[[], str]:
    """The job system's answer, to be read once the other checks are done (a worker ping runs beside them)."""
    if settings_of(current_app).jobs.backend != "celery":
        return lambda: "thread"
    from app.jobs import jobs_status  # here, not at the top: Celery is imported only by processes that use it

    return jobs_status(current_app._get_current_object())  # type: ignore[attr-defined]  # the ping's thread has no context


def check_readiness() -> dict[str, object]:
    """``{"database", "redis", "jobs", "version", "build"}``; raise ServiceUnavailable naming what is down.

    Job workers being down does not make this process unready: requests still work, and what they enqueue waits
    in Redis for a worker. ``jobs`` says so for monitoring.
    """
    jobs = _jobs_status()
    report: dict[str, object] = {
        "database": "ok" if _database_ok() else "down",
        "redis": "ok" if _redis_ok() else "down",
        "jobs": jobs(),
        "version": __version__,
        "build": build_info(),
    }
    down = [name for name in ("database", "redis") if report[name] != "ok"]
    if down:
        raise ServiceUnavailable(_("unavailable: %(names)s", names=", ".join(down)), data=report)
    return report
