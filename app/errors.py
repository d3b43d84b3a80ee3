"""Every error the API answers, and the one function that turns any exception into the error envelope.

Raise these anywhere in a request (``raise NotFound("no such file")``); framework errors (unknown
route, bad JSON, validation, request too large), outages of the database or Redis and unhandled
exceptions come out in the same shape:
``{"code", "status", "message", "field", "request_id"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Response, jsonify
from flask_babel.speaklater import LazyString
from sqlalchemy import exc as sa_exc
from werkzeug import exceptions as http
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Response as WerkzeugResponse

from app.extensions import db
from app.i18n import _, lazy_gettext
from app.request_id import current_request_id

log = logging.getLogger(__name__)


class APIError(Exception):
    """Base of every API error: an HTTP status, a status name, a message and maybe a field."""

    code = 500
    status = "SERVER_ERROR"
    message: str | LazyString = lazy_gettext("Internal server error.")

    def __init__(
        self,
        message: str | LazyString | None = None,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> None:
        if message is None:
            message = self.message
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.data = data

    def body(self) -> dict[str, Any]:
        body = {
            "code": self.code,
            "status": self.status,
            "message": str(self.message),  # a lazy message in the language of the request (app.i18n)
            "field": self.field,
            "request_id": current_request_id(),
        }
        if self.data is not None:
            body["data"] = self.data
        return body


class InvalidField(APIError):
    code, status, message = 400, "INVALID_FIELD", lazy_gettext("A field is missing or invalid.")


class BadRequest(APIError):
    code, status, message = 400, "BAD_REQUEST", lazy_gettext("The request is malformed.")


class NotAuthorized(APIError):
    code, status, message = 401, "NOT_AUTHORIZED", lazy_gettext("Authentication is required.")
    challenge = 'Bearer realm="api"'  # RFC 9110 15.5.2: a 401 names how to authenticate

    def __init__(self, message: str | LazyString | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", self.challenge)


class ReauthRequired(NotAuthorized):
    """A sensitive change, and the session has not proved the password or a second factor lately (POST
    /api/auth/reauth makes it recent)."""

    status = "REAUTH_REQUIRED"
    message = lazy_gettext("Confirm your password or code first (POST /api/auth/reauth).")


class MfaRequired(NotAuthorized):
    """POST /api/auth/login/mfa with a ticket that is missing, expired, used or void."""

    status, message = "MFA_REQUIRED", lazy_gettext("The ticket is missing, expired or used; log in again.")


class Forbidden(APIError):
    code, status, message = 403, "FORBIDDEN", lazy_gettext("You are not allowed to do this.")


class NotFound(APIError):
    code, status, message = 404, "NOT_FOUND", lazy_gettext("Not found.")


class MethodNotAllowed(APIError):
    code, status, message = 405, "METHOD_NOT_ALLOWED", lazy_gettext("This method is not allowed here.")


class Conflict(APIError):
    code, status, message = 409, "CONFLICT", lazy_gettext("This value is already taken.")


class PayloadTooLarge(APIError):
    code, status, message = 413, "PAYLOAD_TOO_LARGE", lazy_gettext("The request body is too large.")


class UnsupportedMediaType(APIError):
    code, status, message = 415, "UNSUPPORTED_MEDIA_TYPE", lazy_gettext("This media type is not supported here.")


class RangeNotSatisfiable(APIError):
    """A download's Range lies outside the file (the contract's table names no 416: this status name is ours)."""

    code, status, message = 416, "RANGE_NOT_SATISFIABLE", lazy_gettext("The requested range is not satisfiable.")


class TooManyRequests(APIError):
    code, status, message = 429, "TOO_MANY_REQUESTS", lazy_gettext("Too many requests; try again later.")

    def __init__(self, message: str | LazyString | None = None, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers["Retry-After"] = str(max(1, int(retry_after)))


class ServerError(APIError):
    code, status, message = 500, "SERVER_ERROR", lazy_gettext("Internal server error.")


class StorageNotConfigured(APIError):
    code, status, message = 501, "STORAGE_NOT_CONFIGURED", lazy_gettext("Cloud storage keys are not configured.")


class SmsFailed(APIError):
    code, status, message = 502, "SMS_FAILED", lazy_gettext("The SMS gateway failed.")


class ServiceUnavailable(APIError):
    code, status, message = 503, "SERVICE_UNAVAILABLE", lazy_gettext("A service this request needs is unavailable.")


# What each status means, as the spec says it for every operation that can answer it.
ERROR_DESCRIPTIONS = {
    400: "INVALID_FIELD (field names it) or BAD_REQUEST",
    401: "NOT_AUTHORIZED: no token, or an unknown, expired or revoked one; REAUTH_REQUIRED or MFA_REQUIRED where the "
         "operation says so",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT: a unique value is taken",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE: the Range lies outside the file; Content-Range names its size",
    429: "TOO_MANY_REQUESTS: see Retry-After",
    500: "SERVER_ERROR",
    501: "STORAGE_NOT_CONFIGURED",
    502: "SMS_FAILED",
    503: "SERVICE_UNAVAILABLE: the database or Redis cannot be reached",
}
ERROR_MODEL = "Error"  # the name the error envelope's model is registered under in the spec (app.api.envelope)

ERRORS_BY_CODE: dict[int, type[APIError]] = {
    cls.code: cls
    for cls in (
        BadRequest, NotAuthorized, Forbidden, NotFound, MethodNotAllowed, Conflict, PayloadTooLarge,
        UnsupportedMediaType, RangeNotSatisfiable, TooManyRequests, ServerError, StorageNotConfigured, SmsFailed,
        ServiceUnavailable,
    )
}

# Outages: the server is down, unreachable or too slow. Anything else from these libraries is a bug.
OUTAGES: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)
_outage_listeners: list[Callable[[BaseException], None]] = []


def on_outage(listener: Callable[[BaseException], None]) -> None:
    """Have ``listener`` called with each outage a request answers with 503 (app.metrics counts them)."""
    if listener not in _outage_listeners:
        _outage_listeners.append(listener)


def _is_bad_json(exc: BaseException) -> bool:
    """Whether ``exc`` is Flask's answer to a body that does not parse: the JSON decoder's ValueError is among the
    exceptions it was raised from (or while handling)."""
    cause = exc.__cause__ or exc.__context__
    for _depth in range(3):
        if cause is None or isinstance(cause, ValueError):
            return cause is not None
        cause = cause.__cause__ or cause.__context__
    return False


def _from_http_exception(exc: http.HTTPException) -> APIError:
    """A werkzeug/Flask/RESTX HTTP error as an APIError, keeping the field of a validation error. Its message is
    ours, in the request's language: werkzeug's descriptions are English prose (and may quote the request)."""
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") if isinstance(data, dict) else None
    if code == 400 and errors:
        field = next(iter(errors))
        return InvalidField(f"{field}: {errors[field]}", field=field)
    if code == 429:  # werkzeug's TooManyRequests, e.g. from abort(429, retry_after=30)
        retry_after = getattr(exc, "retry_after", None)
        return TooManyRequests(retry_after=retry_after if isinstance(retry_after, int) else 1)
    if code == 400 and _is_bad_json(exc):
        return BadRequest(_("The body is not valid JSON."))
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:  # a status the contract does not name: keep it, with the generic status name
        error: APIError = (BadRequest(_("The request cannot be served (HTTP %(code)s %(name)s).", code=code,
                                        name=exc.name)) if code < 500 else ServerError())
        error.code = code
        return error
    return cls()


def as_api_error(exc: BaseException) -> APIError:
    """Classify any exception raised while serving a request."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, http.HTTPException):
        error = _from_http_exception(exc)
        for name, value in exc.get_headers():  # Allow of a 405, Content-Range of a 416, Retry-After, …
            if name.lower() != "content-type":
                error.headers.setdefault(name, value)
        return error
    if isinstance(exc, sa_exc.SQLAlchemyError):
        _roll_back()  # the failed transaction must not break what runs after the handler (logging, teardown)
    if isinstance(exc, sa_exc.DataError):  # a value the database cannot store (a NUL in text on PostgreSQL, …)
        log.warning("database refused a value: %s", exc.orig)
        return BadRequest(_("A value in the request cannot be stored."))
    if isinstance(exc, OUTAGES):
        log.error("dependency unavailable: %s: %s", type(exc).__name__, exc)
        for listener in _outage_listeners:
            listener(exc)
        return ServiceUnavailable()
    log.error("unhandled exception", exc_info=exc)
    return ServerError()


def _roll_back() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection itself may be gone (an outage): nothing left to roll back
        log.debug("rollback after a database error failed", exc_info=True)


def relative_redirect(redirect: RequestRedirect) -> Response:
    """Routing's redirect (``/api`` → ``/api/``) with no body and a relative Location: Werkzeug's own is an HTML
    page whose Location is built from the Host header, which the client chooses."""
    target = urlsplit(redirect.new_url)
    location = target.path + (f"?{target.query}" if target.query else "")
    return Response(status=redirect.code, headers={"Location": location}, mimetype="application/json")


def error_response(exc: BaseException) -> Response | WerkzeugResponse:
    """The error envelope for ``exc``; a redirect from routing is ``relative_redirect``."""
    if isinstance(exc, RequestRedirect):
        return relative_redirect(exc)
    error = as_api_error(exc)
    response = jsonify(error.body())
    response.status_code = error.code
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
