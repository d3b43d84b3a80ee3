"""Periodic clean-up, run by ``celery -A app beat`` (schedule: app/jobs.py PERIODIC) and by manage.py commands.

Each is an @async_task, so the thread backend can run one too, and each is safe to run twice or concurrently.
"""

from __future__ import annotations

import logging

from app.services import file_cleanup, security_events, sessions
from app.tasks import async_task

log = logging.getLogger(__name__)


@async_task
def prune_sessions() -> int:
    """Drop session-index entries whose session has expired."""
    removed = sessions.prune_session_index()
    log.info("pruned %d expired session-index entries", removed)
    return removed


@async_task
def prune_events() -> int:
    """Delete security events older than auth.events_ttl_days."""
    removed = security_events.prune()
    log.info("pruned %d old security events", removed)
    return removed


@async_task
def prune_files() -> dict:
    """Delete stored bytes no row names (past a grace period) and rows whose bytes are gone."""
    report = file_cleanup.prune_files()
    log.info("pruned files: %s", report)
    return report
