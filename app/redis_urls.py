"""Placeholder until the Sentinel branch lands (it replaces this module)."""

from __future__ import annotations

from typing import Any


def celery_broker(url: str) -> dict[str, Any]:
    """Celery's broker URL for the app's Redis URL: kombu spells redis-py's ``unix://PATH?db=N`` as
    ``redis+socket://PATH?virtual_host=N`` (it has no ``unix`` transport)."""
    if url.startswith("unix://"):
        url = "redis+socket://" + url.removeprefix("unix://").replace("db=", "virtual_host=")
    return {"broker_url": url}
