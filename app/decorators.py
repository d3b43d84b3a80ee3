"""Cross-cutting decorators: @login_check, @admin_required, @log_record, @async_task."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g
from flask_restx.utils import merge

from app import auth
from app.errors import ERROR_DESCRIPTIONS, ERROR_MODEL, Forbidden
from app.i18n import _
from app.tasks import async_task

__all__ = ["admin_required", "async_task", "log_record", "login_check"]

F = TypeVar("F", bound=Callable[..., Any])


def _documents(func: Callable[..., Any], *codes: int) -> None:
    """Document error statuses with the error envelope, named as the spec registers it (app.api)."""
    responses = {str(code): (ERROR_DESCRIPTIONS[code], ERROR_MODEL) for code in codes}
    func.__apidoc__ = merge(getattr(func, "__apidoc__", {}), {"responses": responses})  # type: ignore[attr-defined]


def login_check(func: F) -> F:
    """401 without a live token, 403 for a deactivated user; the operation then reads who is calling from
    app.auth (``current_identity()``, ``current_user()``)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        auth.check_request()
        return func(*args, **kwargs)

    _documents(wrapper, 401, 403)
    return wrapper  # type: ignore[return-value]


def admin_required(func: F) -> F:
    """@login_check, then 403 unless the user is an admin."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not auth.current_identity().is_admin:
            raise Forbidden(_("Only an admin may do this."))
        return func(*args, **kwargs)

    return login_check(wrapper)  # type: ignore[return-value]


def log_record(func: F) -> F:
    """Log this operation's request and response in detail (secrets redacted); see app.logs."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.log_record = True
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
