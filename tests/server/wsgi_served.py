"""A WSGIAdapter serving a tiny WSGI app from an IOLoop in a thread of the test, over Tornado's HTTP/1 or httptools."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from app.server.adapter import WSGIAdapter
from app.server.bodies import BodyLimits
from app.server.fast_http import FastServer

LIMITS = BodyLimits(upload=64 * 1024, other=1024)
HTTP = ("tornado", "httptools")  # server.http's choices, for fixtures' params
WSGIApp = Callable[[dict, Callable], Any]


class Served:
    """An adapter serving a WSGI app on 127.0.0.1:``port`` from an IOLoop in a thread of its own; ``http`` as
    server.http, and for httptools ``timeouts`` as server.header_timeout and server.keep_alive_timeout."""

    def __init__(self, wsgi_app: WSGIApp, http: str = "tornado", timeouts: tuple[float, float] = (10, 75)) -> None:
        self.executor = ThreadPoolExecutor(max_workers=2)
        self.adapter = WSGIAdapter(wsgi_app, self.executor, LIMITS)
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.server: HTTPServer | FastServer | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                if http == "httptools":
                    self.server = FastServer(self.adapter, None, *timeouts)
                    await self.server.start(sockets)
                else:
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


def serving(http: str = "tornado") -> Iterator[Callable[..., Served]]:
    """For a fixture: ``yield from serving(http)`` gives ``serve(wsgi_app, **options)``; every server is stopped
    afterwards."""
    started: list[Served] = []

    def start(wsgi_app: WSGIApp, **options: Any) -> Served:
        started.append(Served(wsgi_app, http, **options))
        return started[-1]

    yield start
    for served in started:
        served.stop()
