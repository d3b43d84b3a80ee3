"""Cross-cutting decorators: @login_check, @admin_required, @log_record, @async_task."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from flask_restx.utils import merge

from app.api.envelope import ERROR_DESCRIPTIONS, error_model
from app.errors import Forbidden
from app.services.accounts import user_for_token
from app.tasks import async_task

__all__ = ["admin_required", "async_task", "log_record", "login_check"]

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
    responses = {str(code): (ERROR_DESCRIPTIONS[code], error_model) for code in codes}
    func.__apidoc__ = merge(getattr(func, "__apidoc__", {}), {"responses": responses})  # type: ignore[attr-defined]


def login_check(func: F) -> F:
    """401 without a live token, 403 for a deactivated user; sets g.current_user, g.token, g.session_id."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = request_token()
        g.current_user, g.session_id = user_for_token(token)
        g.user_id = g.current_user.id  # for log lines, which must not touch the ORM after a failed request
        g.token = token
        return func(*args, **kwargs)

    _documents(wrapper, 401, 403)
    return wrapper  # type: ignore[return-value]


def admin_required(func: F) -> F:
    """@login_check, then 403 unless the user is an admin."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.current_user.is_admin:
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
