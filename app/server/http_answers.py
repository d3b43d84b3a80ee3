"""How a connection of the httptools path (http_connection.py) answers: one request at a time, on the thread pool,
the next only once the client has taken the answer before; long bodies piece by piece as the client takes them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING

from app.server.adapter import BODILESS, Answer, WSGIAdapter, close, next_piece
from app.server.fast_wsgi import Request, chunk, has_length, response_head

if TYPE_CHECKING:
    from app.server.fast_http import FastServer

log = logging.getLogger(__name__)

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE_HEAD = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Answering:
    """The answering half of http_connection.Connection (its reading half sets these)."""

    server: FastServer
    adapter: WSGIAdapter
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    queue: deque[Request]
    busy: bool
    done: bool
    paused: bool
    deadline: float
    remote_ip: str
    request: Request | None
    unparsed: bytes
    last_word: bytes
    drained: asyncio.Future[None] | None
    streaming: asyncio.Future[None] | None

    def refuse(self, answer: bytes) -> None:
        raise NotImplementedError

    def continue_body(self) -> None:
        """Say 100 Continue to the request being read, which asked for it (once)."""
        assert self.request is not None
        self.request.expect = ""
        self.transport.write(b"HTTP/1.1 100 (Continue)\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError

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
        # The pool's own future, its callback handing the answer back: a third less than run_in_executor's
        # chained asyncio future (measured: 27 µs a round trip instead of 39).
        future = self.adapter.executor.submit(self.adapter.run_app, environ)
        future.add_done_callback(lambda done: self.hand_back(request, done))

    def hand_back(self, request: Request, future: Future[Answer]) -> None:
        """In the request thread: on to the loop with the answer."""
        with contextlib.suppress(RuntimeError):  # the loop is closed (a stop past its timeout): nobody to write it
            self.loop.call_soon_threadsafe(self.answered, request, future)

    def answered(self, request: Request, future: Future[Answer]) -> None:
        if future.cancelled():  # still queued when a stop passed its timeout: the app never ran it
            self.finish(request, keep_alive=False)
            return
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
        self.transport.write(head if bodiless(request, answer) else head + answer.first)
        self.finish(request, keep_alive)

    async def stream(self, request: Request, answer: Answer, keep_alive: bool) -> None:
        """Write a long body piece by piece, each made on the pool once the client has taken the one before."""
        assert answer.rest is not None
        executor = self.adapter.executor
        try:
            if bodiless(request, answer):  # nothing of what the app made goes out after such a head
                head, _ = response_head(request, answer.status, answer.headers, None, keep_alive)
                self.transport.write(head)
                return
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
        """``request`` is answered: on to the next one once the client has taken this answer, or close."""
        request.close_body()
        self.adapter.in_flight -= 1
        if not keep_alive or self.server.stopping or (self.done and not self.queue):
            self.busy = False
            if self.last_word and not self.transport.is_closing():
                self.transport.write(self.last_word)
            self.transport.close()
        elif self.drained is not None:  # still busy: the answer is not taken (the deadline drops it if it never is)
            self.deadline = self.loop.time() + self.server.keep_alive_timeout
            self.drained.add_done_callback(self.taken)
        else:
            self.busy = False
            self.carry_on()

    def taken(self, drained: asyncio.Future[None]) -> None:
        if not drained.cancelled():
            drained.exception()  # a lost connection's: retrieved, carry_on sees the transport closing
        self.busy = False
        self.carry_on()

    def carry_on(self) -> None:
        """The next waiting request, or the rest of what came, or read on."""
        if self.transport.is_closing() or self.busy:
            return
        self.deadline = 0.0
        if self.queue:
            self.next()
        elif self.unparsed:
            self.data_received(b"")
            if not self.busy and not self.queue:
                self.carry_on()
        else:
            if self.request is not None and self.request.expect:  # its head came while the one before was answered
                self.continue_body()
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


def bodiless(request: Request, answer: Answer) -> bool:
    """Whether the answer carries no body: one to HEAD, a 204 or a 304 (RFC 9110 6.4.1)."""
    return request.method == "HEAD" or answer.status[:3] in BODILESS
