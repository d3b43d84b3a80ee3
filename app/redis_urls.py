"""Placeholder until the Sentinel branch lands (it replaces this module)."""

from __future__ import annotations

from typing import Any


def celery_broker(url: str) -> dict[str, Any]:
    return {"broker_url": url}
