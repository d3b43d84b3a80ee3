"""The WSGI adapter: runs the app on a thread pool and writes its answer on the IOLoop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest, ResponseStartLine
from tornado.wsgi import WSGIContainer

BODILESS = ("204", "304")  # statuses that carry no body, and so no Content-Length (RFC 9110 8.6)


class WSGIAdapter(WSGIContainer):
    """Runs a request on the thread pool in one hop: the app call, its body and its close() together.

    Tornado's own WSGIContainer hands each body chunk to the pool separately (three hops for a JSON
    answer, each a thread wake-up and an IOLoop wake-up); here the thread returns the finished
    response and the IOLoop only writes it. It also counts requests in flight, for a graceful stop.
    The app writes its own access line (app.access), so Tornado's is not written.
    """

    def __init__(self, wsgi_application: Any, executor: ThreadPoolExecutor) -> None:
        super().__init__(wsgi_application, executor=executor)
        self.in_flight = 0

    def _respond(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return chunks.append

        result = self.wsgi_application(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app did not call start_response")
        return started[0], started[1], b"".join(chunks)

    async def handle_request(self, request: HTTPServerRequest) -> None:
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            status, headers, body = await loop.run_in_executor(self.executor, self._respond, self.environ(request))
            code, reason = status.split(" ", 1)
            header_obj = HTTPHeaders()
            for name, value in headers:
                header_obj.add(name, value)
            if code not in BODILESS and "Content-Length" not in header_obj:
                header_obj["Content-Length"] = str(len(body))
            assert request.connection is not None
            request.connection.write_headers(ResponseStartLine("HTTP/1.1", int(code), reason), header_obj, body)
            request.connection.finish()
        finally:
            self.in_flight -= 1
