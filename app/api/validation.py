"""What a request may carry: JSON that parses to something sane, closed and bounded bodies, bounded query
arguments, and numbers (in paths and query strings) in ASCII digits only.

Client text reaches Redis key names, log lines and queries; each value is bounded here, before any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider
from flask_restx import Model, abort, fields, reqparse
from jsonschema import FormatChecker
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from app.errors import BadRequest, InvalidField, UnsupportedMediaType
from app.i18n import _

SHOWN_NAME = 64  # characters of an unknown property's name that an error echoes
CLOSED_FORM = "x-closed-form"  # on a form part in the spec: its form takes no part the spec does not name
# The one format a body's strings are checked against (app.api.fields.Day); others, such as "phone", are the
# services' to check.
FORMATS = FormatChecker(formats=("date",))


class RequestJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a document nested too deep to parse is malformed JSON (a 400), not a RecursionError."""

    sort_keys = False  # answers keep the order they were built in
    ensure_ascii = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class AsciiIntegerConverter(IntegerConverter):
    """``<int:…>`` in ASCII digits only: Python's ``\\d`` and ``int()`` read U+0661 (Arabic-Indic one) as 1."""

    regex = r"[0-9]+"


def printable(text: str, limit: int = SHOWN_NAME) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates escaped (``\\ud800``), safe to encode and log."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON ``value``, keys included, at any depth (without recursion: nesting is deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_valid_unicode(value: Any) -> bool:
    """Whether every string in ``value`` encodes to UTF-8: JSON's ``\\ud800`` does not."""
    return all(text.isascii() or _encodes(text) for text in strings_in(value))


def has_nul(value: Any) -> bool:
    """Whether a string in ``value`` holds U+0000, which PostgreSQL's text cannot store and C-string code and log
    readers cut at: refused here, alike on every backend."""
    return any("\x00" in text for text in strings_in(value))


def close_model(model: Model) -> Model:
    """Mark ``model`` closed (``additionalProperties: false``); a string property without ``max_length`` is a
    programming error, refused when the module defining the operation is imported."""
    for name, field in model.items():
        if isinstance(field, fields.String) and field.max_length is None:
            raise TypeError(f"{model.name}.{name}: a request string needs max_length")
    model.__strict__ = True
    return model


def check_body(model: Model, payload: Any, resolver: Any) -> None:
    """400 unless ``payload`` is an object of ``model``'s properties only, valid Unicode, meeting the model."""
    if not isinstance(payload, dict):
        raise BadRequest(_("The body must be a JSON object."))
    for name, value in payload.items():
        if name not in model:
            shown = printable(name)
            raise InvalidField(_("%(name)s is not a field of this operation.", name=shown), field=shown)
        if not is_valid_unicode(value):
            raise InvalidField(_("%(name)s is not valid Unicode (a lone surrogate).", name=name), field=name)
        if has_nul(value):
            raise InvalidField(_("%(name)s must not contain a NUL character (U+0000).", name=name), field=name)
    try:
        model.validate(payload, resolver, format_checker=FORMATS)
    except HTTPException as exc:  # jsonschema's messages quote the value: a password, or megabytes of text
        errors = (getattr(exc, "data", None) or {}).get("errors") or {}
        path = next(iter(errors), "")
        name = path.split(".", 1)[0]
        if name not in payload:
            raise InvalidField(_("%(name)s is required.", name=name), field=name) from None
        raise InvalidField(_("%(name)s must be %(rule)s.", name=name, rule=describe(model[name])), field=path) from None


def describe(field: fields.Raw) -> str:
    """What a valid value of ``field`` is, in words (never the value that was sent), in the request's language."""
    if isinstance(field, fields.String):
        if field.__schema_format__ == "date":
            return _("a date (YYYY-MM-DD)")
        if getattr(field, "enum", None):
            return _("one of %(choices)s", choices=", ".join(field.enum))
        low, high = field.min_length, field.max_length
        rule = (_("a string of %(low)s to %(high)s characters", low=low, high=high) if low
                else _("a string of at most %(high)s characters", high=high))
        return _("%(rule)s matching %(pattern)s", rule=rule, pattern=field.pattern) if field.pattern else rule
    if isinstance(field, fields.Integer):
        low, high = getattr(field, "minimum", None), getattr(field, "maximum", None)
        if low is not None and high is not None:
            return _("a whole number from %(low)s to %(high)s", low=low, high=high)
        return _("a whole number")
    if isinstance(field, fields.Boolean):
        return _("true or false")
    return _("a valid %(type)s", type=field.__schema_type__)


class BoundedText:
    """A query-string argument type: text of at most ``max_length`` characters, which the spec shows."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self.__schema__ = {"type": "string", "maxLength": max_length}

    def __call__(self, value: str) -> str:
        if len(value) > self.max_length:
            raise ValueError(_("at most %(high)s characters", high=self.max_length))
        if "\x00" in value:
            raise ValueError(_("no NUL character (U+0000)"))
        return value


class WholeNumber:
    """A query-string argument type: an integer from ``low`` to ``high`` written in ASCII digits."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.__schema__ = {"type": "integer", "minimum": low, "maximum": high}

    def __call__(self, value: Any) -> int:
        text = str(value)
        if not (text.isascii() and text.isdigit()) or not self.low <= int(text) <= self.high:
            raise ValueError(_("a whole number from %(low)s to %(high)s", low=self.low, high=self.high))
        return int(text)


class Argument(reqparse.Argument):
    """A query or form argument whose error is only its own, in the request's language: flask-restx's puts the
    argument's help (the spec's English description) before it, and says "Missing required parameter" in English."""

    def handle_validation_error(self, error: Any, bundle_errors: bool) -> Any:
        text = str(error)
        if text.startswith("Missing required parameter"):
            text = _("required")
        elif text.startswith("The value ") and "is not a valid choice" in text:
            text = _("not one of the allowed values")
        errors = {self.name: text}
        if bundle_errors:
            return ValueError(text), errors
        abort(HTTPStatus.BAD_REQUEST, "Input payload validation failed", errors=errors)
        return None  # abort raises


class Parser(reqparse.RequestParser):
    """reqparse's parser of query strings and forms with the errors of :class:`Argument`."""

    def __init__(self, argument_class: type = Argument, *args: Any, **kwargs: Any) -> None:
        super().__init__(argument_class, *args, **kwargs)


class PartsParser(Parser):
    """A parser of multipart parts, closed like a body: another body type is 415; a part (file or field) it does
    not name, or one sent twice, is 400 INVALID_FIELD naming it."""

    @property
    def __schema__(self) -> list[dict]:
        """The parts, each marked ``x-closed-form`` (Swagger 2.0 cannot close a form; the OpenAPI 3.1 spec says
        ``additionalProperties: false``, app.api.openapi31)."""
        return [{**part, CLOSED_FORM: True} for part in super().__schema__]

    def parse_args(self, req: Any = None, strict: bool = False) -> Any:
        if request.mimetype != "multipart/form-data":
            raise UnsupportedMediaType(_("Send the upload as multipart/form-data."))
        known = {argument.name for argument in self.args}
        for parts in (request.files, request.form):
            for name, values in parts.lists():
                shown = printable(name)
                if name not in known:
                    raise InvalidField(_("The part %(name)r is not one this operation takes.", name=shown), field=shown)
                if len(values) > 1:
                    raise InvalidField(_("The part %(name)r is sent more than once.", name=shown), field=shown)
        return super().parse_args(req, strict)
