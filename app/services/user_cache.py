"""A snapshot of each signed-in user's row in Redis, fetched by the same script that checks the token, so that a
signed-in request costs one Redis round trip and no SQL query.

    auth:profile:<user id>   JSON of the columns below     TTL auth.profile_cache_ttl (0 turns the cache off)

The snapshot becomes the request's ``g.current_user``: a persistent ``User`` attached to the session without a
query, with these columns loaded and the others (the password hash, …) loaded from the database when first
read; a change to it is written as usual. Any committed change to a user row through the ORM deletes that
user's snapshot; the next request reads the row and stores a new one. A change made outside the ORM (raw SQL,
another program) shows after at most the TTL.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session, make_transient_to_detached

from app.config import configs
from app.extensions import db, redis_store
from app.models import User

COLUMNS = ("id", "phone", "email", "nickname", "role", "is_active")
TIMES = ("created_at", "last_login_at")
log = logging.getLogger(__name__)
_STALE = "stale_user_snapshots"  # Session.info key: ids of users changed in the current transaction


def key_prefix() -> str:
    return redis_store.key("auth", "profile", "")


def attach(snapshot: str) -> User | None:
    """The user the snapshot describes, attached to the session without a query; None if it does not parse."""
    try:
        data: dict[str, Any] = json.loads(snapshot)
        fields = {name: data[name] for name in COLUMNS}
        fields.update({name: datetime.fromisoformat(data[name]) if data[name] else None for name in TIMES})
    except (ValueError, KeyError, TypeError):
        return None
    user = User(**fields)
    make_transient_to_detached(user)
    return db.session.merge(user, load=False)


def store(user: User) -> None:
    """Keep ``user``'s snapshot for the next requests (when the cache is on)."""
    ttl = configs.auth.profile_cache_ttl
    if ttl <= 0:
        return
    data = {name: getattr(user, name) for name in COLUMNS}
    data.update({name: getattr(user, name).isoformat() if getattr(user, name) else None for name in TIMES})
    redis_store.set(key_prefix() + str(user.id), json.dumps(data), ex=ttl)


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
        redis_store.delete(*(key_prefix() + str(user_id) for user_id in stale))
    except redis.RedisError as exc:  # the change is committed: say so, and let the snapshot expire
        log.warning("could not drop the cached snapshot of user(s) %s: %s", sorted(stale), exc)


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(_STALE, None)
