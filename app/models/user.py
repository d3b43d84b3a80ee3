"""Accounts."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

# Trigram indexes serving the user list's q, made on PostgreSQL only by migration 3f6c2a9e1d47; the model, shared
# with SQLite and MySQL, does not declare them, and autogenerate must not propose dropping them.
SEARCH_INDEXES = frozenset({"ix_users_phone_trgm", "ix_users_email_trgm", "ix_users_nickname_trgm"})


def autogenerate_includes(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's include_object: everything but SEARCH_INDEXES."""
    return not (type_ == "index" and name in SEARCH_INDEXES)


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(db.Model):  # type: ignore[name-defined]
    """A person who can log in: by phone or email and password, or by SMS code."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True, index=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(254), unique=True, index=True)
    nickname: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The TOTP secret, encrypted under a key derived from SECRET_KEY (app.services.mfa); None while TOTP is off.
    totp_secret: Mapped[str | None] = mapped_column(String(255))

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.phone}>"
