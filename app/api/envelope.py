"""The success envelope, the error envelope in the spec, and one-line helpers that document both.

A resource method returns its payload; ``@returns(ns, model)`` wraps it as
``{"code", "status": "SUCCESS", "message", "data"}`` and documents exactly that in the spec.
``@accepts(ns, model)`` validates a JSON body (closed: an unknown property is 400) and documents its
400/413/415 answers, and
``@fails(ns, 404, 409)`` documents further error statuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g
from flask_restx import Model, Namespace, fields, marshal

from app.api.validation import check_body, close_model
from app.errors import ERROR_DESCRIPTIONS, ERROR_MODEL
from app.i18n import _

F = TypeVar("F", bound=Callable[..., Any])


class _Nullable:
    """Marks a field ``x-nullable`` in the spec (Swagger 2.0 has no null type)."""

    def schema(self) -> dict:
        schema = super().schema()  # type: ignore[misc]
        schema["x-nullable"] = True
        return schema


class NullableString(_Nullable, fields.String):
    """A string that may be null."""


class NullableRaw(_Nullable, fields.Raw):
    """Any JSON value, null included."""


class NullableNested(_Nullable, fields.Nested):
    """A nested model that may be null."""


class Timestamp(fields.DateTime):
    """An ISO 8601 UTC time from a datetime (naive ones are UTC, as MySQL returns them) or epoch seconds."""

    def format(self, value: Any) -> str:
        if isinstance(value, int | float | str):
            value = datetime.fromtimestamp(float(value), UTC)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).isoformat(timespec="seconds"))


class NullableTimestamp(_Nullable, Timestamp):
    """A Timestamp that may be null."""


class NullableDate(_Nullable, fields.Date):
    """An ISO 8601 date (YYYY-MM-DD) that may be null."""


ERROR_FIELDS = {
    "code": fields.Integer(required=True, description="the HTTP status", example=404),
    "status": fields.String(required=True, description="the status name", example="NOT_FOUND"),
    "message": fields.String(required=True, description="what went wrong, for people"),
    "field": NullableString(required=True, description="the offending field, when there is one"),
    "request_id": fields.String(required=True, description="X-Request-ID of this request"),
}
error_model = Model(ERROR_MODEL, ERROR_FIELDS)


@dataclass
class Reply:
    """A payload with its own message (``_("…")``, in the request's language), for when "OK" will not do."""

    data: Any
    message: str | None = None


def envelope_of(ns: Namespace, model: Model | None, *, as_list: bool = False, code: int = 200,
                nullable: bool = False) -> Model:
    """The success envelope around ``model`` (or null, when ``nullable``), registered on ``ns`` once."""
    if model is None:
        name, data = "EmptyEnvelope", NullableRaw(description="always null")
    elif nullable:
        name, data = f"{model.name}OrNullEnvelope", NullableNested(model, required=True, allow_null=True)
    else:
        name = f"{model.name}{'List' if as_list else ''}Envelope"
        data = fields.Nested(model, as_list=as_list, required=True)
    if name in ns.models:
        return ns.models[name]
    return ns.model(name, {
        "code": fields.Integer(required=True, example=code),
        "status": fields.String(required=True, example="SUCCESS"),
        "message": fields.String(required=True, example="OK"),
        "data": data,
    })


def page_of(ns: Namespace, model: Model) -> Model:
    """A page of ``model``, registered on ``ns`` once: ``{"items", "page", "per_page", "total", "pages"}`` in the
    page form, ``{"items", "per_page", "next_cursor"}`` in the cursor form (app.services.records). Only the
    properties of the form asked for are sent."""
    name = f"{model.name}Page"
    if name in ns.models:
        return ns.models[name]
    page = ns.model(name, {
        "items": fields.List(fields.Nested(model), required=True),
        "page": fields.Integer(example=1, description="page form only"),
        "per_page": fields.Integer(required=True, example=20),
        "total": fields.Integer(example=57, description="page form only"),
        "pages": fields.Integer(example=3, description="page form only"),
        "next_cursor": NullableString(description="cursor form only: the cursor of the next page; null on the "
                                                  "last page"),
    })
    page.only_given = True  # see returns()
    return page


def returns(
    ns: Namespace,
    model: Model | None = None,
    *,
    code: int = 200,
    description: str = "Success",
    as_list: bool = False,
    nullable: bool = False,
    skip_none: bool = False,
) -> Callable[[F], F]:
    """Document ``code`` with the enveloped ``model`` (or null, when ``nullable``) and wrap what the method
    returns in it; with ``skip_none``, the model's properties that are None are left out (a model that holds
    one of two shapes)."""
    wrapped = envelope_of(ns, model, as_list=as_list, code=code, nullable=nullable)

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> tuple[dict, int]:
            result = func(*args, **kwargs)
            reply = result if isinstance(result, Reply) else Reply(result)
            data = reply.data
            if model is not None and data is not None:
                given = data.keys() if getattr(model, "only_given", False) else None  # a page: its form's keys
                data = marshal(data, model, skip_none=skip_none)
                data = data if given is None else {key: value for key, value in data.items() if key in given}
            message = _("OK") if reply.message is None else reply.message
            return {"code": code, "status": "SUCCESS", "message": message, "data": data}, code

        return ns.response(code, description, wrapped)(wrapper)

    return decorate


def returns_nothing(ns: Namespace, description: str = "Done; no body") -> Callable[[F], F]:
    """Document and answer ``204 No Content`` (no body at all)."""

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            func(*args, **kwargs)
            return Response(status=204, mimetype="application/json")  # the spec's one media type; no body

        return ns.response(204, description)(wrapper)

    return decorate


def fails(ns: Namespace, *codes: int) -> Callable[[F], F]:
    """Document error statuses the operation can answer, each with the error envelope."""

    def decorate(func: F) -> F:
        for code in codes:
            func = ns.response(code, ERROR_DESCRIPTIONS[code], error_model)(func)
        return func

    return decorate


def accepts(ns: Namespace, model: Model) -> Callable[[F], F]:
    """Validate the JSON body against ``model``, closed (a property it does not name is 400 INVALID_FIELD
    naming it), and document what a bad body gets. Every string property of ``model`` needs a max_length.

    The check runs when the method is called, so decorators above it (``@login_check``) come first:
    an anonymous request gets 401, not a list of missing fields.
    """
    close_model(model)

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.body_fields = model.keys()  # what @log_record may show the values of (app.logs)
            check_body(model, ns.payload, current_app.extensions["restx_api"].refresolver)
            return func(*args, **kwargs)

        return fails(ns, 400, 413, 415)(ns.expect(model, validate=False)(wrapper))

    return decorate


def public(func: F) -> F:
    """Mark an operation as needing no token (no lock in Swagger UI)."""
    doc = getattr(func, "__apidoc__", {})
    func.__apidoc__ = {**doc, "security": []}  # type: ignore[attr-defined]
    return func
