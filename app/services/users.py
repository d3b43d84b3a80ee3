"""Looking up accounts (the accounts feature adds the rest here)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import User


def phone_registered(phone: str) -> bool:
    """Whether an account uses this E.164 phone number."""
    return db.session.scalar(select(User.id).where(User.phone == phone)) is not None
