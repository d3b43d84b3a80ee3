"""Reading rows the way every list and item endpoint does: by id within range, and a page at a time."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select

from app.extensions import db

T = TypeVar("T")
MAX_ID = 2**31 - 1  # ids are 32-bit INTEGERs on PostgreSQL and MySQL; a larger one cannot exist


def get_by_id(model: type[T], record_id: int) -> T | None:
    """The row, or None, also for an id out of the column's range (which the database would refuse)."""
    return db.session.get(model, record_id) if 0 < record_id <= MAX_ID else None


def paginate(query: Select, page: int, per_page: int) -> dict[str, Any]:
    """``{"items", "page", "per_page", "total", "pages"}``, the contract's page."""
    result = db.paginate(query, page=page, per_page=per_page, max_per_page=100, error_out=False)
    return {"items": list(result.items), "page": page, "per_page": per_page, "total": result.total or 0,
            "pages": result.pages}
