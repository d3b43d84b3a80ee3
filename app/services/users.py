"""Users: lookups, the admin's operations and a user's own profile."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Forbidden, InvalidField, NotFound
from app.extensions import db
from app.i18n import _
from app.models import User
from app.services import security_events, sessions
from app.services.files import delete_files_of
from app.services.password_policy import check_new_password, password_context
from app.services.passwords import hash_password
from app.services.phones import normalize_phone
from app.services.records import Paging, get_by_id, paginate

ROLES = ("user", "admin")
EMAIL_MAX_LENGTH = 254
# An address in ASCII (as the spec's format "email" means). Explicit character classes only, so that Python and the
# JavaScript and Rust engines of clients and fuzzers, which read it in the spec (app.api.fields), agree on it.
EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z0-9-]{2,}$"
_EMAIL = re.compile(EMAIL_PATTERN)


def normalize_email(email: str | None) -> str | None:
    """Lower-cased and trimmed; None for none; 400 on ``email`` when malformed."""
    if email is None or not str(email).strip():
        return None
    value = str(email).strip().lower()
    if len(value) > EMAIL_MAX_LENGTH or not _EMAIL.match(value):
        raise InvalidField(_("email is not a valid address"), field="email")
    return value


def check_unique(phone: str | None = None, email: str | None = None, exclude: int | None = None) -> None:
    """409 on the field whose value another account uses."""
    for field, user in (("phone", phone and find_by_phone(phone)), ("email", email and find_by_email(email))):
        if user and user.id != exclude:
            raise _taken(field)


def _taken(field: str) -> Conflict:
    if field == "phone":
        return Conflict(_("This phone number is already registered."), field=field)
    return Conflict(_("This email is already registered."), field=field)


def save_user(user: User, *, keep_an_admin: bool = False) -> User:
    """Commit ``user``; a unique value taken meanwhile (a race past check_unique) is 409 on its field. With
    ``keep_an_admin``, 403 and nothing saved when no active admin would remain."""
    db.session.add(user)
    try:
        db.session.flush()
        if keep_an_admin and not _active_admins():
            db.session.rollback()
            raise Forbidden(_("This would leave no active admin."))
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        field = "email" if "email" in str(exc.orig).lower() else "phone"
        raise _taken(field) from None
    return user


def phone_registered(phone: str) -> bool:
    """Whether an account uses this E.164 phone number."""
    return db.session.scalar(select(User.id).where(User.phone == phone)) is not None


def find_by_phone(phone: str) -> User | None:
    return db.session.scalar(select(User).where(User.phone == phone))


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email))


def get_user(user_id: int) -> User:
    user = get_by_id(User, user_id)
    if user is None:
        raise NotFound(_("No such user."))
    return user


def list_users(paging: Paging, q: str | None = None) -> dict[str, Any]:
    """A page of users, newest first; ``q`` matches part of the phone, email or nickname. On PostgreSQL trigram
    indexes serve the three LIKEs (migration 3f6c2a9e1d47): their expressions must stay ``phone``, ``email`` and
    ``lower(nickname)``."""
    query = select(User).order_by(User.id.desc())
    if q and q.strip():
        # contains(autoescape=True): % and _ in q match only themselves (LIKE … ESCAPE '/', on every database)
        text = q.strip().lower()
        query = query.where(or_(User.phone.contains(text, autoescape=True), User.email.contains(text, autoescape=True),
                                db.func.lower(User.nickname).contains(text, autoescape=True)))
    return paginate(query, paging)


def create_user(phone: str, password: str, nickname: str, email: str | None = None, role: str = "user") -> User:
    """An account made by an admin (or `manage.py create-admin`): no SMS proof needed."""
    phone, email = normalize_phone(phone), normalize_email(email)
    check_new_password(password, context=password_context(phone, email, nickname))
    _check_role(role)
    check_unique(phone, email)
    return save_user(User(phone=phone, email=email, nickname=nickname, role=role,
                          password_hash=hash_password(password)))


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidField(_("role must be one of %(choices)s", choices=", ".join(ROLES)), field="role")


def update_user(
    user: User,
    *,
    nickname: str | None = None,
    email: str | None = None,
    role: str | None = None,
    is_active: bool | None = None,
    session_id: str | None = None,
) -> User:
    """Change what is given (None leaves a value as it is; an empty email removes it). Deactivating ends every
    session of the user; a demotion or deactivation that would leave no active admin is 403. ``session_id``: the
    user's own session making the change, named by its ``email_changed`` event."""
    if email is not None:
        new_email = normalize_email(email)
        check_unique(email=new_email, exclude=user.id)
    if role is not None:
        _check_role(role)
    demoting = (role is not None and role != "admin") or is_active is False
    if demoting:
        _active_admins(lock=True)
    for field, value in (("nickname", nickname), ("role", role), ("is_active", is_active)):
        if value is not None:
            setattr(user, field, value)
    old_email = user.email
    email_changed = email is not None and new_email != old_email
    if email_changed:
        user.email = new_email
        # no session of the user's own: an admin made the change, whose address is not the user's to see
        security_events.record(user.id, "email_changed", session_id, by_other=session_id is None)
    save_user(user, keep_an_admin=demoting)
    if is_active is False:
        sessions.end_all_sessions(user.id)
    if email_changed and old_email:  # the old address hears of it: a thief's new address would not tell
        security_events.tell_owner(user, "email_changed", address=old_email)
    return user


def changes_email(user: User, email: str | None) -> bool:
    """Whether setting ``email`` (None: not given) would change the user's address."""
    return email is not None and normalize_email(email) != user.email


def _active_admins(lock: bool = False) -> list[int]:
    """The active admins' ids. A demotion locks their rows (FOR UPDATE) before it changes anything and counts
    them again after its change, in one transaction: two admins demoting each other at once are serialised on
    PostgreSQL and MySQL/MariaDB by the row locks, on SQLite by its single writer, and one of them gets 403."""
    query = select(User.id).where(User.role == "admin", User.is_active.is_(True)).order_by(User.id)
    return list(db.session.scalars(query.with_for_update() if lock else query))


def delete_user(user: User, deleted_by: int | None = None) -> None:
    """Deactivate the user (403 for the last active admin; their sessions end), delete their files (bytes
    included), then the account. 403 when ``deleted_by`` is the user themself."""
    if user.id == deleted_by:
        raise Forbidden(_("You may not delete your own account."))
    update_user(user, is_active=False)
    delete_files_of(user.id)
    # Not left to ON DELETE CASCADE: SQLite does not enforce foreign keys, and gives the highest id again, so a
    # new account would inherit these rows (and see the events). Every table naming users.id: recovery codes,
    # security events, and the rows of resources that `manage.py new-resource` adds.
    for table in reversed(db.metadata.sorted_tables):
        for key in table.foreign_keys:
            if key.column is User.__table__.c.id:
                db.session.execute(delete(table).where(key.parent == user.id))
    db.session.delete(user)
    db.session.commit()
