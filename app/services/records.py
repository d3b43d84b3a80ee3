"""Reading rows the way every list and item endpoint does: by id within range, and a page at a time.

A list is read in one of two forms (the contract's "Pagination"):

- page form, ``?page=N``: ``{"items", "page", "per_page", "total", "pages"}`` (a COUNT and an OFFSET: cost grows
  with the page number);
- cursor form, ``?cursor=``: ``{"items", "per_page", "next_cursor"}``, the rows after the last one seen by the
  list's unique ORDER BY key (keyset pagination: an index range scan, the same cost at row 1,000,000 as at row 1).

A cursor is opaque: the last row's key, 8 bytes, and 8 bytes of an HMAC under SECRET_KEY, in URL-safe base64. A
cursor the server did not make is refused (400 INVALID_FIELD on ``cursor``), never read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Column, Select
from sqlalchemy.sql import operators

from app.config import configs
from app.errors import InvalidField
from app.extensions import db
from app.i18n import _

T = TypeVar("T")
MAX_ID = 2**31 - 1  # ids are 32-bit INTEGERs on PostgreSQL and MySQL; a larger one cannot exist
_CURSOR = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 bytes in unpadded URL-safe base64
_MAC_BYTES = 8


@dataclass(frozen=True)
class Paging:
    """What a list request asks for: page ``page``, or with ``by_cursor`` the rows after key ``after`` (None: from
    the first row)."""

    per_page: int = 20
    page: int = 1
    by_cursor: bool = False
    after: int | None = None


def get_by_id(model: type[T], record_id: int) -> T | None:
    """The row, or None, also for an id out of the column's range (which the database would refuse)."""
    return db.session.get(model, record_id) if 0 < record_id <= MAX_ID else None


def paginate(query: Select, paging: Paging) -> dict[str, Any]:
    """One page of ``query`` in the form ``paging`` asks for (see the module's docstring)."""
    if paging.by_cursor:
        return _cursor_page(query, paging)
    result = db.paginate(query, page=paging.page, per_page=paging.per_page, max_per_page=100, error_out=False)
    return {"items": list(result.items), "page": paging.page, "per_page": paging.per_page,
            "total": result.total or 0, "pages": result.pages}


def _cursor_page(query: Select, paging: Paging) -> dict[str, Any]:
    key, descending = _order_key(query)
    if paging.after is not None:
        query = query.where(key < paging.after if descending else key > paging.after)
    rows = list(db.session.scalars(query.limit(paging.per_page + 1)))  # one more: is there a next page?
    items = rows[:paging.per_page]
    more = len(rows) > paging.per_page
    return {"items": items, "per_page": paging.per_page,
            "next_cursor": encode_cursor(getattr(items[-1], key.key)) if more else None}


def _order_key(query: Select) -> tuple[Column, bool]:
    """The query's ORDER BY column and whether it is descending; it must be the primary key, alone (unique, so
    that no row is skipped or repeated between pages)."""
    clauses = query._order_by_clauses
    if len(clauses) == 1:
        descending = getattr(clauses[0], "modifier", None) is operators.desc_op
        column = getattr(clauses[0], "element", clauses[0])
        if isinstance(column, Column) and column.primary_key:
            return column, descending
    raise TypeError("a cursor page needs a query ordered by its primary key alone")


def _mac(packed: bytes) -> bytes:
    key = hmac.new(configs.app.secret_key.encode(), b"list cursor", hashlib.sha256).digest()
    return hmac.new(key, packed, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(last_key: int) -> str:
    """The opaque cursor of the rows after ``last_key``."""
    packed = struct.pack(">Q", last_key)
    return base64.urlsafe_b64encode(packed + _mac(packed)).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """The key a cursor of ``encode_cursor`` holds; 400 INVALID_FIELD on ``cursor`` for any other text."""
    if _CURSOR.fullmatch(cursor):
        raw = base64.urlsafe_b64decode(cursor + "==")
        packed, mac = raw[:8], raw[8:]
        last_key = struct.unpack(">Q", packed)[0]
        if hmac.compare_digest(mac, _mac(packed)) and 0 < last_key <= MAX_ID:
            return int(last_key)
    raise InvalidField(_("cursor is not one this API gave (use a page's next_cursor, or empty for the first page)"),
                       field="cursor")
