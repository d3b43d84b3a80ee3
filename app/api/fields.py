"""What the namespaces share: the request fields (password, email, phone, nickname, codes, dates, whole numbers),
the pagination arguments and the user model. The rules they document are the services' (app.services.users and
password_policy), written there once.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import request
from flask_restx import Model, fields

from app.api.envelope import NullableString, NullableTimestamp, Timestamp
from app.api.validation import BoundedText, Parser, WholeNumber
from app.errors import InvalidField
from app.i18n import _
from app.services.password_policy import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from app.services.records import Paging, decode_cursor
from app.services.users import EMAIL_MAX_LENGTH, EMAIL_PATTERN, ROLES

# An address or "" for none: a pattern, since Swagger 2.0 has no other way to say "an address or empty".
EMAIL_OR_EMPTY = "^$|" + EMAIL_PATTERN
TICKET = 128  # characters of a ticket or token we accept: ours are 43 to 93
PHONE_MAX_LENGTH = 32  # "+" and 15 digits, with room for separators: "+86 138-0013-8000"
NICKNAME_MAX_LENGTH = 64  # the column's length


class Email(fields.String):
    """An email address, or "" for none (which removes one); bodies are checked against the pattern."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("pattern", EMAIL_OR_EMPTY)
        kwargs.setdefault("max_length", EMAIL_MAX_LENGTH)
        super().__init__(*args, **kwargs)


class Phone(fields.String):
    """A phone number (format ``phone``): 11-digit mainland mobile number or E.164; the service validates it."""

    __schema_format__ = "phone"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", PHONE_MAX_LENGTH)
        super().__init__(*args, **kwargs)


class Alternatives(Model):
    """A request model of alternatives (``code`` or ``recovery_code``) with one whole, valid example body. Swagger
    UI's Try it out starts from the model's example; without one it fills in every property, every alternative at
    once, which the operation refuses or reads as the other alternative."""

    def __init__(self, name: str, *args: Any, example: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(name, *args, **kwargs)
        self.example = example

    @property
    def _schema(self) -> dict[str, Any]:
        schema = super()._schema
        return schema if self.example is None else {**schema, "example": self.example}

    def __deepcopy__(self, memo: dict) -> Alternatives:
        copied = super().__deepcopy__(memo)
        copied.example = self.example
        return copied


class Day(fields.String):
    """A date in a body, ``YYYY-MM-DD`` (format ``date``, checked by app.api.validation); ``day()`` reads it."""

    __schema_format__ = "date"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 10)
        kwargs.setdefault("example", "2030-01-31")
        super().__init__(*args, **kwargs)


def day(value: str | None) -> date | None:
    """The date a checked ``Day`` holds, or None when it was not given."""
    return None if value is None else date.fromisoformat(value)


def whole_number(**kwargs: Any) -> fields.Integer:
    """An integer that a 32-bit INTEGER column holds (PostgreSQL and MySQL refuse a larger one)."""
    return fields.Integer(min=-(2**31), max=2**31 - 1, **kwargs)


def new_password(**kwargs: Any) -> fields.String:
    """A password to set, as app.services.password_policy.check_new_password wants it."""
    kwargs.setdefault("description", "not a common or easily guessed password: zxcvbn's score (0 to 4), with the "
                                     "account's phone, email and nickname and the service's name and "
                                     "auth.password_words as guessable words, must be at least "
                                     "auth.min_password_score (2 by default); nor, when auth.breached_passwords_url "
                                     "is set, one found in a known data breach")
    return fields.String(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH, **kwargs)


def given_password(**kwargs: Any) -> fields.String:
    """A password to check against the stored one: only bounded (a wrong one is answered as wrong, not invalid)."""
    return fields.String(max_length=PASSWORD_MAX_LENGTH, **kwargs)


def nickname(**kwargs: Any) -> fields.String:
    return fields.String(min_length=1, max_length=NICKNAME_MAX_LENGTH, **kwargs)


def six_digit_code(**kwargs: Any) -> fields.String:
    """An SMS or email code as sent: six ASCII digits."""
    return fields.String(example="123456", pattern=r"^\d{6}$", max_length=6, **kwargs)


def recovery_code(**kwargs: Any) -> fields.String:
    """A recovery code as shown (``ABCD-EFGH-JKLM-NPQR``); case, spaces and dashes do not matter."""
    kwargs.setdefault("description", "one of the recovery codes, instead of code")
    return fields.String(example="ABCD-EFGH-JKLM-NPQR", max_length=32, **kwargs)


def role(**kwargs: Any) -> fields.String:
    return fields.String(enum=list(ROLES), max_length=16, **kwargs)


user_model = Model("User", {
    "id": fields.Integer(required=True, example=1),
    "phone": fields.String(required=True, example="+8613800138000"),
    "email": NullableString(required=True, example="me@example.com"),
    "nickname": fields.String(required=True, example="小明"),
    "role": fields.String(required=True, enum=list(ROLES)),
    "is_active": fields.Boolean(required=True),
    "created_at": Timestamp(required=True),
    "last_login_at": NullableTimestamp(required=True),
})

page_args = Parser()
page_args.add_argument("page", type=WholeNumber(1, 1_000_000), default=1, location="args",
                       help="page form: the page number (not with cursor)")
page_args.add_argument("per_page", type=WholeNumber(1, 100), default=20, location="args")
page_args.add_argument("cursor", type=BoundedText(64), location="args",
                       help="cursor form: empty for the first page, then the next_cursor of the page before; the "
                            "same cost on every page (not with page)")


def paging_of(args: dict[str, Any]) -> Paging:
    """The form and page a list request asks for, from ``page_args``' parsed ``args``; ``page`` and ``cursor``
    together are 400 on ``cursor``."""
    cursor = args.get("cursor")
    if cursor is None:
        return Paging(per_page=args["per_page"], page=args["page"])
    if "page" in request.args:
        raise InvalidField(_("Give page or cursor, not both."), field="cursor")
    return Paging(per_page=args["per_page"], by_cursor=True, after=decode_cursor(cursor) if cursor else None)
