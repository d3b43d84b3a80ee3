"""The WSGI adapter: runs the app on a thread pool and writes its answer on the IOLoop, streaming large bodies."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from tornado.http1connection import HTTP1Connection
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    HTTPServerConnectionDelegate,
    HTTPServerRequest,
    ResponseStartLine,
)
from tornado.iostream import StreamClosedError
from tornado.wsgi import WSGIContainer

from app.server.bodies import BodyLimits, BodyReader, SpooledRequest

log = logging.getLogger(__name__)

BODILESS = ("204", "304")  # statuses that carry no body, and so no Content-Length (RFC 9110 8.6)
PIECE = 256 * 1024  # a body up to this size goes out in one write; a longer one in pieces of about this size


class Answer:
    """What the app answered: status, headers, the body's first piece, and the rest when there is more."""

    def __init__(self, status: str, headers: list[tuple[str, str]], first: bytes,
                 rest: Iterator[bytes] | None, result: Iterable[bytes]) -> None:
        self.status, self.headers, self.first, self.rest, self.result = status, headers, first, rest, result


def close(result: Iterable[bytes]) -> None:
    """Call the WSGI body's close(), which a server must call however the body ended."""
    closer = getattr(result, "close", None)
    if closer is not None:
        closer()


def next_piece(chunks: Iterator[bytes], into: list[bytes] | None = None) -> tuple[bytes, bool]:
    """About PIECE bytes from ``chunks`` (after those already ``into``), and whether ``chunks`` ended."""
    pieces = into if into is not None else []
    size = sum(map(len, pieces))
    for chunk in chunks:
        pieces.append(chunk)
        size += len(chunk)
        if size >= PIECE:
            return b"".join(pieces), False
    return b"".join(pieces), True


class WSGIAdapter(WSGIContainer, HTTPServerConnectionDelegate):
    """Runs a request on the thread pool in one hop: the app call, and for a short body the body and its close().

    Tornado's own WSGIContainer hands each body chunk to the pool separately (three hops for a JSON
    answer, each a thread wake-up and an IOLoop wake-up); here the thread returns a short response finished
    and the IOLoop only writes it. A body longer than PIECE goes out piece by piece: each piece is made on
    the pool and written when the client has taken the one before, so a slow reader costs one piece of
    memory, not the whole body. Request bodies are read by BodyReader within ``limits``. It also counts
    requests in flight (until their last byte is written), for a graceful stop. The app writes its own
    access line (app.access), so Tornado's is not written.
    """

    def __init__(self, wsgi_application: Any, executor: ThreadPoolExecutor, limits: BodyLimits) -> None:
        super().__init__(wsgi_application, executor=executor)
        self.limits = limits
        self.in_flight = 0

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        return BodyReader(self.limits, server_conn, request_conn, self)

    def environ(self, request: HTTPServerRequest) -> dict[str, Any]:
        """Tornado's environ, with the spooled body as ``wsgi.input`` and its length (chunks already joined)."""
        environ = super().environ(request)
        if isinstance(request, SpooledRequest):
            environ["wsgi.input"] = request.body_file
            chunked = environ.pop("HTTP_TRANSFER_ENCODING", None) is not None  # its chunks are joined in the file
            if chunked or "CONTENT_LENGTH" in environ:
                environ["CONTENT_LENGTH"] = str(request.body_size)
        return environ

    def run_app(self, environ: dict[str, Any]) -> Answer:
        """In a request thread: call the app and take the first piece of its body (all of a short one)."""
        started: list[Any] = []
        written: list[bytes] = []  # what the app wrote through start_response's legacy write()

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return written.append

        result = self.wsgi_application(environ, start_response)
        try:
            chunks = iter(result)
            first, ended = next_piece(chunks, written)
        except BaseException:
            close(result)
            raise
        if ended:
            close(result)
        if not started:
            raise RuntimeError("the WSGI app did not call start_response")
        return Answer(started[0], started[1], first, None if ended else chunks, result)

    async def handle_request(self, request: HTTPServerRequest) -> None:
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(self.executor, self.run_app, self.environ(request))
            code, reason = answer.status.split(" ", 1)
            headers = HTTPHeaders()
            for name, value in answer.headers:
                headers.add(name, value)
            connection = request.connection
            assert connection is not None
            start_line = ResponseStartLine("HTTP/1.1", int(code), reason)
            if answer.rest is not None and "Content-Length" not in headers and request.version == "HTTP/1.0":
                # No chunked encoding in HTTP/1.0, and a keep-alive connection needs the length: read it all.
                whole = itertools.chain((answer.first,), answer.rest)
                answer.first, answer.rest = await loop.run_in_executor(self.executor, b"".join, whole), None
                await loop.run_in_executor(self.executor, close, answer.result)
            if answer.rest is None:
                if code not in BODILESS and "Content-Length" not in headers:
                    headers["Content-Length"] = str(len(answer.first))
                connection.write_headers(start_line, headers, answer.first)
                connection.finish()
                return
            await self._stream(connection, start_line, headers, answer, loop)
        finally:
            if isinstance(request, SpooledRequest):
                request.close_body()
            self.in_flight -= 1

    async def _stream(self, connection: HTTPConnection, start_line: ResponseStartLine, headers: HTTPHeaders,
                      answer: Answer, loop: asyncio.AbstractEventLoop) -> None:
        """Write a long body piece by piece, each once the client has taken the one before."""
        assert answer.rest is not None
        try:
            await connection.write_headers(start_line, headers, answer.first)
            ended = False
            while not ended:
                piece, ended = await loop.run_in_executor(self.executor, next_piece, answer.rest)
                if piece:
                    await connection.write(piece)
            connection.finish()
        except StreamClosedError:  # the client went away: nothing more to write
            pass
        except Exception:
            log.exception("writing a response body failed")
            cast(HTTP1Connection, connection).close()
        finally:
            try:
                await loop.run_in_executor(self.executor, close, answer.result)
            except RuntimeError:  # the pool is shut down (a stop past its timeout): close it here
                close(answer.result)
