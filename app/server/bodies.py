"""Request bodies: read within a limit, or refused with a 413 before they are read.

Tornado's own reader keeps a whole body in memory (up to 100 MB by default) before the app can refuse it.
Here a body is refused as soon as its headers show it is too large: a ``Content-Length`` over the limit is
answered at once, a chunked body when it reaches the limit. A multipart upload may have the app's
``MAX_CONTENT_LENGTH`` (``files.max_size`` plus room for the multipart framing), any other body (JSON,
forms) ``server.max_body_size``. The 413 is the contract's error envelope, with ``X-Request-ID``, and the
connection closes after it (the rest of the body is never read). A body that is accepted is held in memory up to
SPOOL bytes and past that in a temporary file, so parallel uploads cost about SPOOL each, not their size.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    HTTPServerRequest,
    RequestStartLine,
    ResponseStartLine,
)

from app.config import settings_of
from app.errors import PayloadTooLarge
from app.request_id import HEADER, accept_or_make

access_log = logging.getLogger("app.access")
SPOOL = 1024 * 1024  # bytes of a request body held in memory; the rest goes to a temporary file


class SpooledRequest(HTTPServerRequest):
    """A request whose body is ``body_file`` (``body_size`` bytes, read from its start), not ``body``."""

    body_file: tempfile.SpooledTemporaryFile[bytes]
    body_size = 0

    def close_body(self) -> None:
        self.body_file.close()


@dataclass(frozen=True)
class BodyLimits:
    """Bytes a request body may have: ``upload`` for multipart/form-data, ``other`` for anything else."""

    upload: int
    other: int

    @classmethod
    def of(cls, app: Any) -> BodyLimits:
        """The limits of a Flask app: its MAX_CONTENT_LENGTH for uploads, ``server.max_body_size`` for the rest."""
        upload = int(app.config["MAX_CONTENT_LENGTH"])
        return cls(upload=upload, other=min(upload, settings_of(app).server.max_body_size))

    def for_type(self, content_type: str) -> int:
        return self.upload if content_type.lower().startswith("multipart/form-data") else self.other


def refusal(method: str, path: str, remote_ip: str | None, request_id: str) -> tuple[dict[str, str], bytes]:
    """The 413 error envelope's headers and body for a request whose body is not read; logged as the app logs
    an answer. ``request_id`` is the X-Request-ID the client sent ("" for none)."""
    request_id = accept_or_make(request_id)
    body = json.dumps({**PayloadTooLarge().body(), "request_id": request_id}, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), HEADER: request_id,
               "X-Content-Type-Options": "nosniff", "Connection": "close"}
    access_log.info("%s %s 413 0.0ms user=- ip=%s (body over the limit, not read)", method, path[:200], remote_ip,
                    extra={"request_id": request_id})
    return headers, body


def payload_too_large(request: HTTPServerRequest) -> tuple[HTTPHeaders, bytes]:
    """The 413 answer for a Tornado ``request``."""
    headers, body = refusal(request.method or "", request.path, request.remote_ip, request.headers.get(HEADER, ""))
    return HTTPHeaders(headers), body


class BodyReader(HTTPMessageDelegate):
    """Reads one request's body within its limit, then hands the request to ``respond``; or answers 413."""

    def __init__(self, limits: BodyLimits, server_conn: object, request_conn: HTTPConnection,
                 respond: Callable[[HTTPServerRequest], None]) -> None:
        self.limits, self.server_conn, self.connection, self.respond = limits, server_conn, request_conn, respond
        self.request: SpooledRequest | None = None
        self.limit = 0
        self.refused = False

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders) -> None:
        assert isinstance(start_line, RequestStartLine)
        self.request = SpooledRequest(connection=self.connection, server_connection=self.server_conn,
                                      start_line=start_line, headers=headers)
        self.request.body_file = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 closed by close_body
        self.limit = self.limits.for_type(headers.get("Content-Type", ""))
        declared = headers.get("Content-Length", "")
        set_max_body_size = self.connection.set_max_body_size  # type: ignore[attr-defined]
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            # Counted in data_received, so that the answer can be a 413 rather than Tornado's bare 400.
            set_max_body_size(sys.maxsize)
        elif declared.isdigit() and int(declared) > self.limit:
            set_max_body_size(int(declared))  # Tornado refuses no further: the connection closes after the 413
            self.refuse()
        else:
            set_max_body_size(self.limit)  # Tornado's own check for anything else (a malformed length)

    def data_received(self, chunk: bytes) -> None:
        if self.refused:
            return
        assert self.request is not None
        if self.request.body_size + len(chunk) > self.limit:
            self.refuse()
            return
        self.request.body_file.write(chunk)
        self.request.body_size += len(chunk)

    def finish(self) -> None:
        if self.refused:
            return
        assert self.request is not None
        self.request.body_file.seek(0)
        self.respond(self.request)  # the adapter closes the body once the answer is written

    def on_connection_close(self) -> None:
        """The client went away before the body was whole (Tornado calls this only then)."""
        if self.request is not None:
            self.request.close_body()

    def refuse(self) -> None:
        """Answer 413 now; Tornado closes the connection once it is written, the body unread."""
        assert self.request is not None
        self.refused = True
        self.request.close_body()
        headers, body = payload_too_large(self.request)
        self.connection.write_headers(ResponseStartLine("HTTP/1.1", 413, "Payload Too Large"), headers, body)
        self.connection.finish()
