"""One client connection of the httptools path (fast_http.py): llhttp's callbacks, the request queue, the answers.

Requests are answered one at a time in the order they came; pipelined ones wait, with reading paused. A request
head is limited to HEAD_LIMIT bytes (431) and its server's ``header_timeout`` once it began (408); llhttp's
strict mode refuses what request smuggling needs with a 400. Either way the connection closes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from app.request_id import HEADER
from app.server.adapter import Answer, close, next_piece
from app.server.bodies import refusal
from app.server.fast_wsgi import Request, chunk, has_length, response_head

if TYPE_CHECKING:
    from app.server.fast_http import FastServer

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # bytes of a request line and headers, as Tornado's max_header_size
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE_HEAD = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Connection(asyncio.Protocol):
    """One client connection: parses its requests in order and answers each in turn (pipelined ones queue)."""

    transport: asyncio.Transport

    def __init__(self, server: FastServer) -> None:
        self.server, self.adapter = server, server.adapter
        self.parser = httptools.HttpRequestParser(self)
        self.request: Request | None = None  # the one being parsed
        self.queue: deque[Request] = deque()  # parsed, waiting for the one before to be answered
        self.busy = self.done = self.paused = False  # done: no more requests on this connection
        self.in_head, self.head_bytes, self.deadline = False, 0, 0.0
        self.drained: asyncio.Future[None] | None = None
        self.last_word = b""  # what to write before closing, when a request is refused after others
        self.streaming: asyncio.Future[None] | None = None  # the long answer being written, if any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.remote_ip = peer[0] if isinstance(peer, tuple) else ""
        self.transport.set_write_buffer_limits(high=64 * 1024)
        self.server.connections.add(self)
        self.deadline = self.loop.time() + self.server.keep_alive_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.done, self.deadline = True, 0.0
        for request in (self.request, *self.queue):
            if request is not None:
                request.close_body()
        if self.drained is not None and not self.drained.done():
            self.drained.set_exception(ConnectionResetError("the client went away"))

    def idle(self) -> bool:
        return not self.busy and not self.queue and self.request is None

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        head_only = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # the request is served as a plain one; nothing after it is read
            self.done = True
        except httptools.HttpParserError as exc:
            log.info("Malformed HTTP message from %s: %s", self.remote_ip, exc)
            self.refuse(BAD_REQUEST)
            return
        if self.in_head and head_only:  # a chunk that was head from end to end
            self.head_bytes += len(data)
            if self.head_bytes > HEAD_LIMIT:
                self.refuse(TOO_LARGE_HEAD)

    def refuse(self, answer: bytes) -> None:
        """Answer a request that cannot be served, then close; after the answers before it when they are due."""
        if self.request is not None:
            self.request.close_body()
        self.done, self.request, self.in_head, self.deadline = True, None, False, 0.0
        self.last_word = answer
        if self.busy or self.queue:
            self.transport.pause_reading()
            return  # finish() writes it after the answers before it
        self.transport.write(answer)
        self.transport.close()

    def timed_out(self) -> None:
        if self.in_head:
            self.refuse(TIMED_OUT)
        else:
            self.transport.close()

    # llhttp's callbacks, in the order it calls them

    def on_message_begin(self) -> None:
        self.request = Request()
        self.in_head, self.head_bytes = True, 0
        self.deadline = self.loop.time() + self.server.header_timeout

    def on_url(self, url: bytes) -> None:
        assert self.request is not None
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_head and self.request is not None:  # not a chunked body's trailer
            self.request.add_header(name, value)

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        self.in_head, self.deadline = False, 0.0
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1"):
            raise httptools.HttpParserError(f"unsupported HTTP version {version[:8]}")
        request.version, request.method = f"HTTP/{version}", self.parser.get_method().decode("latin-1")
        request.keep_alive = self.parser.should_keep_alive()
        request.chunked = "Transfer-Encoding" in request.headers
        request.limit = self.adapter.limits.for_type(request.header("Content-Type"))
        declared = request.header("Content-Length")
        if declared and int(declared) > request.limit:
            self.too_large(request)
        elif request.header("Expect").lower() == "100-continue" and version == "1.1" and not self.busy:
            self.transport.write(b"HTTP/1.1 100 (Continue)\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request is None or request.refusal is not None:
            return
        if request.size + len(body) > request.limit:
            self.too_large(request)
        else:
            request.write_body(body)

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        if request is None or request.refusal is not None:
            return
        if self.done:  # parsed in the same read as a request that closes the connection: not served
            request.close_body()
            return
        if self.busy:  # pipelined: read no more until the answers before it are out
            self.transport.pause_reading()
            self.paused = True
        self.queue.append(request)
        if not self.busy:
            self.next()

    def too_large(self, request: Request) -> None:
        """A 413 in the contract's envelope in place of ``request``, its body unread; the connection closes."""
        headers, body = refusal(request.method, request.url.decode("latin-1").partition("?")[0], self.remote_ip,
                                request.header(HEADER))
        head, _ = response_head(request, "413 Payload Too Large", list(headers.items()), body, keep_alive=True)
        request.refusal = head + body
        request.close_body()
        self.request = None
        self.queue.append(request)
        self.done = True
        self.transport.pause_reading()
        if not self.busy:
            self.next()

    # answering

    def next(self) -> None:
        """Start on the next queued request: its 413, or the app on the thread pool."""
        request = self.queue.popleft()
        self.busy = True
        if request.refusal is not None:
            self.transport.write(request.refusal)
            self.transport.close()
            return
        try:
            environ = request.environ(self.remote_ip, self.server.scheme)
        except ValueError:  # a Host with a port that is not a number: nothing after it is answered
            for later in (request, *self.queue):
                later.close_body()
            self.busy = False
            self.queue.clear()
            self.refuse(BAD_REQUEST)
            return
        self.adapter.in_flight += 1
        future = self.loop.run_in_executor(self.adapter.executor, self.adapter.run_app, environ)
        future.add_done_callback(lambda done: self.answered(request, done))

    def answered(self, request: Request, future: asyncio.Future[Answer]) -> None:
        try:
            answer = future.result()
        except Exception:
            log.exception("the WSGI app failed")
            self.finish(request, keep_alive=False)
            return
        keep_alive = request.keep_alive and not self.server.stopping and not self.done
        if self.transport.is_closing() and answer.rest is None:  # the client went away (the body is closed)
            self.finish(request, keep_alive=False)
            return
        if answer.rest is not None:
            self.streaming = asyncio.ensure_future(self.stream(request, answer, keep_alive))
            return
        try:
            head, _ = response_head(request, answer.status, answer.headers, answer.first, keep_alive)
        except ValueError:
            log.exception("the WSGI app answered a header with CR or LF")
            self.finish(request, keep_alive=False)
            return
        self.transport.write(head if request.method == "HEAD" else head + answer.first)
        self.finish(request, keep_alive)

    async def stream(self, request: Request, answer: Answer, keep_alive: bool) -> None:
        """Write a long body piece by piece, each made on the pool once the client has taken the one before."""
        assert answer.rest is not None
        executor = self.adapter.executor
        try:
            if request.version == "HTTP/1.0" and not has_length(answer.headers):  # no chunks in HTTP/1.0
                whole = itertools.chain((answer.first,), answer.rest)
                answer.first, answer.rest = await self.loop.run_in_executor(executor, b"".join, whole), iter(())
                head, chunked = response_head(request, answer.status, answer.headers, answer.first, keep_alive)
            else:
                head, chunked = response_head(request, answer.status, answer.headers, None, keep_alive)

            def frame(piece: bytes) -> bytes:
                return chunk(piece) if chunked else piece

            self.transport.write(head + (frame(answer.first) if answer.first else b""))
            ended = False
            while not ended:
                await self.drain()
                piece, ended = await self.loop.run_in_executor(executor, next_piece, answer.rest)
                if piece and not self.transport.is_closing():
                    self.transport.write(frame(piece))
            if chunked:
                self.transport.write(b"0\r\n\r\n")
        except ConnectionError:  # the client went away: nothing more to write
            keep_alive = False
        except Exception:
            log.exception("writing a response body failed")
            keep_alive = False
        finally:
            try:
                await self.loop.run_in_executor(executor, close, answer.result)
            except RuntimeError:  # the pool is shut down (a stop past its timeout): close it here
                close(answer.result)
            self.finish(request, keep_alive)

    def finish(self, request: Request, keep_alive: bool) -> None:
        """``request`` is answered: on to the next one, or wait for it, or close."""
        request.close_body()
        self.adapter.in_flight -= 1
        self.busy = False
        if not keep_alive or self.server.stopping or (self.done and not self.queue):
            if self.last_word and not self.transport.is_closing():
                self.transport.write(self.last_word)
            self.transport.close()
        elif self.queue:
            self.next()
        else:
            if self.paused:
                self.paused = False
                self.transport.resume_reading()
            if self.request is None:
                self.deadline = self.loop.time() + self.server.keep_alive_timeout

    async def drain(self) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        if self.drained is not None:
            await self.drained

    def pause_writing(self) -> None:
        self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None
