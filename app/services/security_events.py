"""Security events: what happened to an account, for its owner to review (GET /api/auth/events).

``record`` adds the event to the database session of the change it reports, so both are committed together
(a password change and its ``password_changed``); a change that lives in Redis only (ending a session) records
its event after the Redis call, once it is known which sessions ended, and commits right away. Events older
than ``auth.events_ttl_days`` are never listed, and are deleted when their user gets a new event or by
``manage.py prune-events``.

Like a log line, which takes its request id from the request being served, an event takes that request's client
address and User-Agent itself: the one place a service reads ``request``, so that every service that changes an
account need not carry them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import has_request_context, request
from sqlalchemy import delete, select

from app.config import configs
from app.extensions import db
from app.i18n import N_, _
from app.models import SecurityEvent, User
from app.services.mail import send_email
from app.services.records import Paging, paginate

log = logging.getLogger(__name__)

TYPES = (
    "login", "login_failed", "logout", "refresh_reuse", "password_changed", "password_reset", "mfa_enabled",
    "mfa_disabled", "recovery_code_used", "recovery_codes_renewed", "session_ended", "email_changed", "reauth",
)

PRUNE_BATCH = 500  # expired events deleted with a new one

# What the owner is told by mail, after the change is committed (the subject, then the sentence), in the language
# of the request that made the change.
NOTICES = {
    "password_changed": (N_("Your password was changed"), N_("The password of your account was changed.")),
    "password_reset": (N_("Your password was reset"), N_("The password of your account was reset.")),
    "mfa_enabled": (N_("Two-step sign-in is on"), N_("Two-step sign-in (an authenticator app) was turned on.")),
    "mfa_disabled": (N_("Two-step sign-in is off"), N_("Two-step sign-in (an authenticator app) was turned off.")),
    "recovery_codes_renewed": (N_("New recovery codes"),
                               N_("New recovery codes were made; the old ones no longer work.")),
    "email_changed": (N_("Your email was changed"), N_("The email of your account was changed to %(new)s.")),
}


def tell_owner(user: User, type_: str, address: str | None = None) -> None:
    """Mail the user (at ``address``, or their email; nothing without one) that ``type_`` happened to their
    account, so a change they did not make does not go unseen."""
    to = address or user.email
    if not to:
        return
    subject, what = NOTICES[type_]
    try:
        send_email(to, _(subject), "security_notice", nickname=user.nickname, what=_(what, new=user.email))
    except Exception:  # the change is committed and answered as done; a notice that cannot be queued is logged
        log.warning("could not send the %s notice to user %s", type_, user.id, exc_info=True)


def _cutoff() -> datetime:
    return datetime.now(UTC) - timedelta(days=configs.auth.events_ttl_days)


def record(user_id: int, type_: str, session_id: str | None = None, *, by_other: bool = False) -> SecurityEvent:
    """Add an event of ``type_`` for the user to the current database session (the caller commits), with the
    client address and User-Agent of the request being served, unless ``by_other`` (an admin acted on the user:
    their address is not the user's to see); the user's expired events go in the same step."""
    if type_ not in TYPES:
        raise ValueError(f"unknown security event type {type_!r}")
    ip, user_agent = "", ""
    if has_request_context() and not by_other:
        ip, user_agent = request.remote_addr or "", request.headers.get("User-Agent", "")[:256]
    event = SecurityEvent(user_id=user_id, type=type_, ip=ip[:64], user_agent=user_agent, session_id=session_id)
    _prune_user(user_id)
    db.session.add(event)
    return event


def _prune_user(user_id: int) -> None:
    """Delete the user's expired events (up to PRUNE_BATCH; the rest next time): by primary key, and only when
    there are some. A DELETE over a range of (user_id, at) takes gap locks on MySQL/MariaDB, and two requests
    recording an event of one user at once then deadlock (one fails with 503); a plain SELECT takes no lock."""
    expired = db.session.scalars(select(SecurityEvent.id).where(SecurityEvent.user_id == user_id,
                                                                SecurityEvent.at < _cutoff()).limit(PRUNE_BATCH)).all()
    if expired:
        db.session.execute(delete(SecurityEvent).where(SecurityEvent.id.in_(expired)))


def record_now(user_id: int, type_: str, session_id: str | None = None) -> None:
    """``record`` and commit: for events whose change is not in the database."""
    record(user_id, type_, session_id)
    db.session.commit()


def list_events(user_id: int, paging: Paging) -> dict[str, Any]:
    """A page of the user's events, newest first."""
    query = (select(SecurityEvent).where(SecurityEvent.user_id == user_id, SecurityEvent.at >= _cutoff())
             .order_by(SecurityEvent.id.desc()))
    return paginate(query, paging)


def prune(batch: int = 1000) -> int:
    """Delete every event older than ``auth.events_ttl_days``, ``batch`` rows per statement and commit (each
    bounded well within the database deadline, however many there are); how many went."""
    cutoff, removed = _cutoff(), 0
    while True:
        ids = db.session.scalars(select(SecurityEvent.id).where(SecurityEvent.at < cutoff)
                                 .order_by(SecurityEvent.at).limit(batch)).all()
        if not ids:
            return removed
        db.session.execute(delete(SecurityEvent).where(SecurityEvent.id.in_(ids)))
        db.session.commit()
        removed += len(ids)
