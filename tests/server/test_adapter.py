"""The WSGI adapter with tiny WSGI apps, on a real HTTPServer in a thread of the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wsgi_served import HTTP, Served, WSGIApp, serving

from app.server.adapter import PIECE
from tests.support import wait_until


@pytest.fixture(params=HTTP)
def serve(request: pytest.FixtureRequest) -> Iterator[Callable[..., Served]]:
    yield from serving(request.param)

def answering(status: str, body: list[bytes], headers: list[tuple[str, str]] | None = None) -> WSGIApp:
    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response(status, headers or [("Content-Type", "text/plain")])
        return body

    return wsgi_app


def test_an_answer_without_content_length_gets_one(serve: Any) -> None:
    served = serve(answering("200 OK", [b"hello ", b"world"]))
    connection = served.connection()
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == "11"
    assert response.read() == b"hello world"


def test_a_204_has_no_content_length_and_the_connection_serves_on(serve: Any) -> None:
    served = serve(answering("204 No Content", []))
    connection = served.connection()
    for _ in range(2):
        connection.request("DELETE", "/thing")
        response = connection.getresponse()
        assert response.status == 204 and response.read() == b""
        assert response.getheader("Content-Length") is None


def test_the_body_is_closed_after_the_answer(serve: Any) -> None:
    closed = threading.Event()

    class Body(list):
        def close(self) -> None:
            closed.set()

    def wsgi_app(environ: dict, start_response: Callable) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"ok"])

    connection = serve(wsgi_app).connection()
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"ok"
    assert closed.wait(5)


def test_the_request_body_and_headers_reach_the_app(serve: Any) -> None:
    def echo(environ: dict, start_response: Callable) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REQUEST_METHOD"].encode(), b" ", environ["HTTP_X_THING"].encode(), b" ", body]

    connection = serve(echo).connection()
    connection.request("POST", "/", body=b"payload", headers={"X-Thing": "yes"})
    assert connection.getresponse().read() == b"POST yes payload"


def test_a_request_counts_as_in_flight_until_it_is_answered(serve: Any) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(environ: dict, start_response: Callable) -> list[bytes]:
        entered.set()
        release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    served = serve(slow)
    connection = served.connection()
    connection.request("GET", "/")
    assert entered.wait(5)
    assert served.adapter.in_flight == 1
    release.set()
    assert connection.getresponse().read() == b"done"
    wait_until(lambda: served.adapter.in_flight == 0, timeout=5)  # counted down on the IOLoop, just after


def pieces(count: int, size: int, produced: list[int] | None = None) -> Iterator[bytes]:
    for index in range(count):
        if produced is not None:
            produced.append(size)
        yield bytes([index % 256]) * size


def test_a_long_body_without_a_length_is_streamed_chunked_and_closed(serve: Any) -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return pieces(64, 64 * 1024)

        def close(self) -> None:
            closed.set()

    def wsgi_app(environ: dict, start_response: Callable) -> Body:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Body()

    connection = serve(wsgi_app).connection()
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read() == b"".join(pieces(64, 64 * 1024))
    assert closed.wait(5)
    connection.request("GET", "/")  # the connection serves on
    assert len(connection.getresponse().read()) == 64 * 64 * 1024


def test_a_long_body_with_a_length_keeps_it(serve: Any) -> None:
    size = 4 * PIECE + 3

    def wsgi_app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return iter([b"a" * (size - 3), b"end"])

    connection = serve(wsgi_app).connection()
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.getheader("Content-Length") == str(size) and response.getheader("Transfer-Encoding") is None
    assert response.read() == b"a" * (size - 3) + b"end"


def test_a_reader_that_stops_reading_stops_the_body_being_made(serve: Any) -> None:
    produced: list[int] = []
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return pieces(1024, 64 * 1024, produced)  # 64 MiB if it were all made

        def close(self) -> None:
            closed.set()

    def wsgi_app(environ: dict, start_response: Callable) -> Body:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Body()

    served = serve(wsgi_app)
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    reader.connect(("127.0.0.1", served.port))
    reader.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reader.recv(1024).startswith(b"HTTP/1.1 200")

    def stalled() -> bool:  # nothing made for 0.3 s: the server waits on the reader
        before = len(produced)
        time.sleep(0.3)
        return len(produced) == before

    wait_until(stalled, timeout=10)
    assert sum(produced) < 16 * 1024 * 1024  # what the socket buffers hold, plus a piece or two; not 64 MiB
    assert served.adapter.in_flight == 1  # still writing: a graceful stop waits for it
    reader.close()  # the reader goes away: the body is closed and the request ends
    assert closed.wait(5)
    wait_until(lambda: served.adapter.in_flight == 0, timeout=5)
