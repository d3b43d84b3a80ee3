"""Ending sessions (a user's own, or every one of a user by an admin) and step-up re-authentication, each with its
security event. Opening sessions is app.services.accounts; the sessions themselves, app.services.sessions."""

from __future__ import annotations

from app.config import configs
from app.errors import InvalidField, NotFound
from app.extensions import db
from app.i18n import _
from app.models import User
from app.services import mfa, security_events, sessions
from app.services.login_limits import clear_login_failures, reserve_password_check, user_key
from app.services.passwords import verify_password


def _ended(user_id: int, type_: str, session_ids: list[str], by_other: bool = False) -> None:
    for session_id in session_ids:
        security_events.record(user_id, type_, session_id, by_other=by_other)
    db.session.commit()


def logout(user_id: int, session_id: str) -> None:
    """End the caller's session (a ``logout`` event)."""
    if sessions.end_session(session_id, user_id):
        _ended(user_id, "logout", [session_id])


def logout_all(user_id: int, session_id: str) -> None:
    """End every session of the caller: ``logout`` for this one, ``session_ended`` for the others."""
    ended = sessions.end_all_sessions(user_id, keep=session_id)
    _ended(user_id, "session_ended", ended)
    logout(user_id, session_id)


def end_own_session(user_id: int, session_id: str) -> None:
    """End one of the user's sessions; 404 when it is not one of theirs."""
    if not sessions.end_session(session_id, user_id):
        raise NotFound(_("No such session."))
    _ended(user_id, "session_ended", [session_id])


def end_oldest_sessions(user_id: int) -> None:
    """End the user's oldest sessions past ``auth.max_sessions`` (after a login)."""
    ended = [session_id for session_id in sessions.sessions_beyond(user_id, configs.auth.max_sessions)
             if sessions.end_session(session_id, user_id)]
    if ended:
        _ended(user_id, "session_ended", ended)


def end_user_sessions(user: User) -> None:
    """An admin ends every session of ``user`` (a ``session_ended`` event each, without the admin's address)."""
    _ended(user.id, "session_ended", sessions.end_all_sessions(user.id), by_other=True)


def end_every_session() -> int:
    """End every session of every user (an operator's step, ``manage.py end-sessions --all``); how many ended."""
    ended = 0
    for session_id, user_id in list(sessions.every_session()):
        if sessions.end_session(session_id, user_id):
            security_events.record(user_id, "session_ended", session_id, by_other=True)
            ended += 1
            if ended % 500 == 0:
                db.session.commit()
    db.session.commit()
    return ended


def reauth(user: User, session_id: str, ip: str, *, password: str | None = None, code: str | None = None) -> int:
    """Mark the session recently authenticated after the password or a TOTP code; seconds it counts as such.
    Wrong ones count like failed logins (429 when too many) and are ``login_failed`` events."""
    if (password is None) == (code is None):
        raise InvalidField(_("Give password or code."), field="password")
    try:
        if password is not None:
            keys = [user_key(user.id)]
            reserve_password_check(keys, ip)
            if not verify_password(user.password_hash, password):
                raise InvalidField(_("The password is wrong."), field="password")
            clear_login_failures(keys, ip)
        else:
            mfa.check_second_factor(user, ip, code=code, session_id=session_id)
    except InvalidField:
        security_events.record_now(user.id, "login_failed", session_id)
        raise
    sessions.mark_recent(session_id, second_factor=code is not None)
    security_events.record_now(user.id, "reauth", session_id)
    return configs.auth.reauth_window
