"""Accept and Accept-Language, bounded before anything parses them.

flask-restx parses Accept on every answer and the language choice parses Accept-Language (app.i18n), each whole:
a header of thousands of ranges, or one range of thousands of parameters, cost tens of milliseconds a request. A
browser sends a handful of ranges in a few hundred bytes; past MAX_RANGES ranges or MAX_BYTES bytes the rest is
dropped (the ranges kept are the client's first, which are its preferred in practice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MAX_RANGES = 20
MAX_BYTES = 1024
HEADERS = ("HTTP_ACCEPT", "HTTP_ACCEPT_LANGUAGE")


def bounded(value: str) -> str:
    """The first MAX_RANGES ranges of ``value``, at most MAX_BYTES characters of it."""
    return ",".join(value[:MAX_BYTES].split(",", MAX_RANGES)[:MAX_RANGES])


class BoundedNegotiation:
    """WSGI middleware: the app sees Accept and Accept-Language bounded."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for name in HEADERS:
            value = environ.get(name)
            if value and (len(value) > MAX_BYTES or value.count(",") >= MAX_RANGES):
                environ[name] = bounded(value)
        return self.app(environ, start_response)
