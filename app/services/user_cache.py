"""A snapshot of each signed-in user's row in Redis, fetched by the same script that checks the token, so that a
signed-in request costs one Redis round trip, no SQL query, and no ORM work until it needs the row.

    auth:profile:<user id>   JSON array: the layout's number, then Profile's fields in order
                                                           TTL auth.profile_cache_ttl (0: no cache)

This module names that key and is the only one that writes it; the token check (app.services.sessions) reads it
with the prefix app.auth passes from ``key_prefix()``. app.auth hands the snapshot to handlers as a ``Profile``
(who is signed in, their role, …) and makes the ``User`` from it on first use (``attach``): a persistent row
attached to the session without a query, with these columns loaded and the others (the password hash, …) loaded
from the database when first read; a change to it is written as usual. Any committed change to a user row through
the ORM deletes that user's snapshot; the next request reads the row and stores a new one. A change made outside
the ORM (raw SQL, another program) shows after at most the TTL.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session, make_transient_to_detached

from app.config import configs
from app.extensions import db, redis_store
from app.models import User

log = logging.getLogger(__name__)
_STALE = "stale_user_snapshots"  # Session.info key: ids of users changed in the current transaction
TIMES = ("created_at", "last_login_at")


@dataclass(frozen=True, slots=True)
class Profile:
    """The cached columns of a user's row."""

    id: int
    phone: str
    email: str | None
    nickname: str
    role: str
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of(cls, user: User) -> Profile:
        return cls(**{field.name: getattr(user, field.name) for field in fields(cls)})

    @classmethod
    def parse(cls, snapshot: str, user_id: int) -> Profile | None:
        """The profile of user ``user_id`` that a stored snapshot describes; None if it is of another layout (such
        as the JSON object of field names that came before), of another user, or not of the fields' types."""
        try:
            layout, *values = json.loads(snapshot)
            if layout != LAYOUT or len(values) != len(_TYPES):
                return None
            if not all(type(value) in kinds for value, kinds in zip(values, _TYPES.values(), strict=True)):
                return None
            data: dict[str, Any] = dict(zip(_TYPES, values, strict=True))
            for name in TIMES:
                data[name] = datetime.fromisoformat(data[name]) if data[name] else None
            return cls(**data) if data["id"] == user_id else None
        except (ValueError, KeyError, TypeError):
            return None


LAYOUT = 2  # the first value of a snapshot; change it with the fields, so that no snapshot is read in another's order
# A snapshot is LAYOUT and then the values of these fields, in this order, of these JSON types (times as ISO 8601).
_TYPES: dict[str, tuple[type, ...]] = {
    "id": (int,), "phone": (str,), "email": (str, type(None)), "nickname": (str,), "role": (str,),
    "is_active": (bool,), "created_at": (str,), "last_login_at": (str, type(None))}
if tuple(_TYPES) != tuple(field.name for field in fields(Profile)):
    raise RuntimeError("user_cache._TYPES must list Profile's fields in order (and LAYOUT change with them)")


def key_prefix() -> str:
    """Every snapshot's key but the user id."""
    return redis_store.key("auth", "profile", "")


def key(user_id: int) -> str:
    """The key of the user's snapshot."""
    return key_prefix() + str(user_id)


def read(user_id: int) -> User | None:
    """The user's row from the database (one query), its snapshot stored for the next requests; None if gone."""
    user = db.session.get(User, user_id)
    if user is not None:
        store(Profile.of(user))
    return user


def attach(profile: Profile) -> User:
    """The user the profile describes, attached to the session without a query."""
    user = User(**asdict(profile))
    make_transient_to_detached(user)
    return db.session.merge(user, load=False)


def store(profile: Profile) -> None:
    """Keep the user's snapshot for the next requests (when the cache is on)."""
    ttl = configs.auth.profile_cache_ttl
    if ttl <= 0:
        return
    data = asdict(profile)
    data.update({name: data[name].isoformat() if data[name] else None for name in TIMES})
    snapshot = json.dumps([LAYOUT, *(data[name] for name in _TYPES)], separators=(",", ":"))
    redis_store.set(key(profile.id), snapshot, ex=ttl)


@event.listens_for(User, "after_update")
@event.listens_for(User, "after_delete")
def _changed(_mapper: Any, connection: Any, user: User) -> None:
    session = Session.object_session(user)
    if session is not None:
        session.info.setdefault(_STALE, set()).add(user.id)


@event.listens_for(Session, "after_commit")
def _forget_changed(session: Session) -> None:
    stale = session.info.pop(_STALE, None)
    if not stale:
        return
    try:
        redis_store.delete(*(key(user_id) for user_id in stale))
    except redis.RedisError as exc:  # the change is committed: say so, and let the snapshot expire
        log.warning("could not drop the cached snapshot of user(s) %s: %s", sorted(stale), exc)


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(_STALE, None)
