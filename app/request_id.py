"""The request id: echoed from a well-formed ``X-Request-ID`` header, or made here."""

from __future__ import annotations

import random
import re
import uuid

from flask import Flask, Response, g, has_app_context, has_request_context, request

HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


def current_request_id() -> str | None:
    """This request's id (made on first use), the id a background task inherited, or None."""
    if not has_request_context():
        return g.get("request_id") if has_app_context() else None
    if "request_id" not in g:
        g.request_id = accept_or_make(request.headers.get(HEADER, ""))
    return g.request_id


def accept_or_make(incoming: str) -> str:
    """``incoming`` when it is a well-formed id, else a new one (also for answers made outside the app).

    A random UUID from ``random`` (a Mersenne Twister that Python reseeds in every forked child), not uuid4(): an id
    needs to be unique, not secret, and uuid4's system call let go of the GIL in every request thread, which then
    queued to take it back (a third of a loaded server's samples)."""
    if _WELL_FORMED.match(incoming):
        return incoming
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


def init_app(app: Flask) -> None:
    """Give every response the X-Request-ID header."""

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers[HEADER] = current_request_id() or ""
        return response
