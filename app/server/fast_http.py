"""HTTP/1.1 with httptools (``server.http = "httptools"``): llhttp, in C, parses; the loop's transports write; the same
WSGIAdapter runs the app on the thread pool. Its server layer costs about a quarter of the CPU Tornado's does.

What the Tornado path does holds here too: TLS, the body limits and spooling of bodies.py (a 413 before the body
is read), ``Expect: 100-continue``, chunked request bodies, answers streamed piece by piece as the client takes
them, a graceful stop. A request head is limited to HEAD_LIMIT bytes (431) and ``server.header_timeout`` seconds
once it began (slowloris); a connection waiting for its next request closes after ``server.keep_alive_timeout``.
llhttp's strict mode refuses what request smuggling needs (Content-Length with Transfer-Encoding, a repeated or
malformed length, a bad chunk size, obs-fold, bare CR or LF): a 400, and the connection closes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from app.server.adapter import WSGIAdapter
from app.server.http_connection import HEAD_LIMIT, Connection

__all__ = ["HEAD_LIMIT", "FastServer"]


class FastServer:
    """Serves ``adapter``'s app on listening sockets; tracks its connections for timeouts and a graceful stop."""

    def __init__(self, adapter: WSGIAdapter, tls: ssl.SSLContext | None, header_timeout: float,
                 keep_alive_timeout: float) -> None:
        self.adapter, self.tls = adapter, tls
        self.scheme = "https" if tls else "http"
        self.header_timeout, self.keep_alive_timeout = header_timeout, keep_alive_timeout
        self.connections: set[Connection] = set()
        self.listeners: list[asyncio.Server] = []
        self.stopping = False
        self.sweeper: asyncio.Task[None] | None = None

    async def start(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            self.listeners.append(await loop.create_server(lambda: Connection(self), sock=sock, ssl=self.tls,
                                                           backlog=128))
        self.sweeper = asyncio.create_task(self.sweep())

    async def sweep(self) -> None:
        """Once a second: close the connections whose deadline passed (a slow head, an idle keep-alive)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.header_timeout / 2, self.keep_alive_timeout / 2))
            now = loop.time()
            for connection in [c for c in self.connections if c.deadline and c.deadline < now]:
                connection.timed_out()

    def stop(self) -> None:
        """No new connections, no new requests: idle connections close now, busy ones after their answer."""
        self.stopping = True
        for listener in self.listeners:
            listener.close()
        for connection in list(self.connections):
            if connection.idle():
                connection.transport.close()

    def writing(self) -> bool:
        """Whether any connection still has answer bytes to flush."""
        return any(c.transport.get_write_buffer_size() for c in self.connections)

    async def close_all_connections(self) -> None:
        for connection in list(self.connections):
            connection.transport.abort()
        if self.sweeper is not None:
            self.sweeper.cancel()
