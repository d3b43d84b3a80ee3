"""The WSGI adapter with tiny WSGI apps, on a real HTTPServer in a thread of the test."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import wait_until
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from app.server.adapter import WSGIAdapter

WSGIApp = Callable[[dict, Callable], Any]


class Served:
    """An adapter serving a WSGI app on 127.0.0.1:``port`` from an IOLoop in a thread of its own."""

    def __init__(self, wsgi_app: WSGIApp) -> None:
        self.executor = ThreadPoolExecutor(max_workers=2)
        self.adapter = WSGIAdapter(wsgi_app, self.executor)
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.server: HTTPServer | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                self.server = HTTPServer(self.adapter)
                self.server.add_sockets(sockets)

            self.loop.run_until_complete(start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(5)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.stop()
            await self.server.close_all_connections()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.executor.shutdown()


@pytest.fixture
def serve() -> Iterator[Callable[[WSGIApp], Served]]:
    """``serve(wsgi_app)``: the app behind a WSGIAdapter on a free port; stopped afterwards."""
    started: list[Served] = []

    def start(wsgi_app: WSGIApp) -> Served:
        started.append(Served(wsgi_app))
        return started[-1]

    yield start
    for served in started:
        served.stop()


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
