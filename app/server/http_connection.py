"""One client connection of the httptools path (fast_http.py): llhttp's callbacks, the request queue, the answers.

Requests are answered one at a time in the order they came; pipelined ones wait, at most PIPELINED of them parsed
(the rest of what came stays unparsed, reading paused), and the next answer starts only once the client has taken
the one before (the transport's write buffer below its limit). Bytes are fed to the parser a SLICE at a time and
counted: a request's bytes that are not body, in a row (its head, a trailer, a chunk extension) or in all beyond
its body's size (chunk framing), are limited to HEAD_LIMIT (431 for a head, 400 after it), and the head to its
server's ``header_timeout`` once it began (408); llhttp's strict mode refuses what request smuggling needs with a
400. Either way the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from app.request_id import HEADER
from app.server.bodies import refusal
from app.server.fast_wsgi import Request, head_problem, response_head
from app.server.http_answers import BAD_REQUEST, TIMED_OUT, TOO_LARGE_HEAD, Answering

if TYPE_CHECKING:
    from app.server.fast_http import FastServer

log = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # bytes of a request line and headers, as Tornado's max_header_size
SLICE = 4096  # bytes fed to the parser at a time, so that limits hold within one read
PIPELINED = 16  # parsed requests a connection may have waiting


class Connection(Answering, asyncio.Protocol):
    """One client connection: parses its requests in order and answers each in turn (pipelined ones queue)."""

    transport: asyncio.Transport

    def __init__(self, server: FastServer) -> None:
        self.server, self.adapter = server, server.adapter
        self.parser = httptools.HttpRequestParser(self)
        self.request: Request | None = None  # the one being parsed
        self.queue: deque[Request] = deque()  # parsed, waiting for the one before to be answered
        self.busy = self.done = self.paused = False  # done: no more requests on this connection
        self.in_head, self.deadline = False, 0.0
        # of the request being parsed: bytes that are not body, those since its last body byte, and body bytes
        self.framing = self.since_body = self.body_bytes = 0
        self.unparsed = b""  # what came after PIPELINED waiting requests, fed once they are answered
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
        data, self.unparsed = self.unparsed + data, b""
        for start in range(0, len(data), SLICE):
            if self.done:
                return
            if len(self.queue) >= PIPELINED:  # enough waiting: parse the rest once they are answered
                self.unparsed = data[start:]
                self.transport.pause_reading()
                self.paused = True
                return
            piece = data[start:start + SLICE]
            body_before = self.body_bytes
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:  # the request is served as a plain one; nothing after it is read
                self.done = True
            except httptools.HttpParserError as exc:
                # A head_problem raised in a callback comes back as llhttp's "User callback error": log ours.
                reason = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
                log.info("Malformed HTTP message from %s: %s", self.remote_ip, reason or exc)
                self.refuse(BAD_REQUEST)
                return
            if self.request is not None and self.over_limit(len(piece), self.body_bytes - body_before):
                self.refuse(TOO_LARGE_HEAD if self.in_head else BAD_REQUEST)
                return

    def over_limit(self, fed: int, body: int) -> bool:
        """Count a slice of the request being parsed (``body`` of its ``fed`` bytes were body; a slice of slack):
        whether its bytes that are not body passed HEAD_LIMIT in a row (the head, a trailer, a chunk extension) or
        HEAD_LIMIT more than its body in all (chunk framing)."""
        framing = fed - max(0, body)
        self.framing += framing
        self.since_body = framing if body > 0 else self.since_body + framing
        return self.since_body > HEAD_LIMIT or self.framing > HEAD_LIMIT + self.body_bytes

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
        if self.in_head and not self.busy:
            self.refuse(TIMED_OUT)
        else:  # idle, or a client that stopped taking its answers: what it did not take is dropped
            self.transport.abort()

    # llhttp's callbacks, in the order it calls them

    def on_message_begin(self) -> None:
        self.request = Request()
        self.in_head, self.framing, self.since_body, self.body_bytes = True, 0, 0, 0
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
        problem = head_problem(request)
        if problem:
            raise httptools.HttpParserError(problem)
        request.chunked = "Transfer-Encoding" in request.headers
        request.limit = self.adapter.limits.for_type(request.header("Content-Type"))
        declared = request.header("Content-Length")
        if declared and int(declared) > request.limit:
            self.too_large(request)
        elif request.header("Expect").lower() == "100-continue" and version == "1.1":
            request.expect = "100-continue"
            if not self.busy:  # else when its turn comes (carry_on)
                self.continue_body()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
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
