"""Cross-cutting decorators: @login_check, @admin_required, @log_record, @async_task; and flask.g's class."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from flask.ctx import _AppCtxGlobals
from flask_restx.utils import merge

from app.errors import Forbidden
from app.services import user_cache
from app.services.accounts import user_for_token
from app.tasks import async_task

__all__ = ["RequestGlobals", "admin_required", "async_task", "log_record", "login_check"]

F = TypeVar("F", bound=Callable[..., Any])


def request_token() -> str:
    """The access token from the ``token`` header, or from ``Authorization: Bearer <token>``."""
    token = request.headers.get("token", "").strip()
    if not token:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    return token


def _documents(func: Callable[..., Any], *codes: int) -> None:
    # Imported here: app.api's modules import this one, which must also import first (a test, a script).
    from app.api.envelope import ERROR_DESCRIPTIONS, error_model

    responses = {str(code): (ERROR_DESCRIPTIONS[code], error_model) for code in codes}
    func.__apidoc__ = merge(getattr(func, "__apidoc__", {}), {"responses": responses})  # type: ignore[attr-defined]


class RequestGlobals(_AppCtxGlobals):
    """``flask.g``, where ``g.current_user`` is made on first use (from ``g.profile``): a request that only
    needs to know who is signed in does no ORM work and opens no database session."""

    def __getattr__(self, name: str) -> Any:
        if name == "current_user" and "profile" in self.__dict__:
            user = self.current_user = user_cache.attach(self.profile)
            return user
        return super().__getattr__(name)

    def get(self, name: str, default: Any = None) -> Any:
        if name == "current_user" and "profile" in self.__dict__:
            return self.current_user
        return super().get(name, default)


def login_check(func: F) -> F:
    """401 without a live token, 403 for a deactivated user. Sets g.profile (the signed-in user's cached
    columns: app.services.user_cache.Profile), g.user_id, g.session_id, g.token, and g.current_user (the
    ``User``, attached to the session when first read)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = request_token()
        g.profile, g.session_id, user = user_for_token(token)
        if user is not None:
            g.current_user = user
        g.user_id = g.profile.id  # for log lines, which must not touch the ORM after a failed request
        g.token = token
        return func(*args, **kwargs)

    _documents(wrapper, 401, 403)
    return wrapper  # type: ignore[return-value]


def admin_required(func: F) -> F:
    """@login_check, then 403 unless the user is an admin."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.profile.is_admin:
            raise Forbidden("Only an admin may do this.")
        return func(*args, **kwargs)

    return login_check(wrapper)  # type: ignore[return-value]


def log_record(func: F) -> F:
    """Log this operation's request and response in detail (secrets redacted); see app.logs."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.log_record = True
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
