"""Measurement prototype: serve a WSGI app with httptools (or with Tornado's HTTPServer + WSGIAdapter) on
asyncio/uvloop, to compare the CPU the server layer costs a request. Not a server to run in production.

python bench/proto_http.py --server proto|fast|tornado --app trivial|real --loop uvloop|asyncio [--inline] --port P
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def trivial(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


class Proto(asyncio.Protocol):
    def __init__(self, app: Any, executor: ThreadPoolExecutor | None, server_port: int) -> None:
        self.app, self.executor, self.server_port = app, executor, server_port
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False
        self.pending = bytearray()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else ""
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self.busy:
            self.pending += data
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.close()
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.busy = True
        self.transport.pause_reading()
        environ = self.environ()
        self.keep_alive = self.parser.should_keep_alive()
        if self.executor is None:
            self.respond(self.call(environ))
        else:
            self.loop.run_in_executor(self.executor, self.call, environ).add_done_callback(self.done)

    def environ(self) -> dict[str, Any]:
        path, _, query = self.url.partition(b"?")
        version = self.parser.get_http_version()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.parser.get_method().decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "REMOTE_ADDR": self.remote,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(self.server_port),
            "SERVER_PROTOCOL": "HTTP/" + version,
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.input": BytesIO(b"".join(self.body)), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        for name, value in self.headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = text
            elif key == "HOST":
                environ["HTTP_HOST"] = text
                environ["SERVER_NAME"] = text.split(":")[0]
            else:
                key = "HTTP_" + key
                environ[key] = environ[key] + "," + text if key in environ else text
        return environ

    def call(self, environ: dict[str, Any]) -> bytes:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = started
        lines = [f"HTTP/1.1 {status}\r\n"]
        has_length = False
        for name, value in headers:
            if name.lower() == "content-length":
                has_length = True
            lines.append(f"{name}: {value}\r\n")
        if not has_length:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + body

    def done(self, future: asyncio.Future[bytes]) -> None:
        self.respond(future.result())

    def respond(self, data: bytes) -> None:
        self.transport.write(data)
        if not self.keep_alive:
            self.transport.close()
            return
        self.busy = False
        self.transport.resume_reading()
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.data_received(data)


def make_real() -> Any:
    from app import create_app

    return create_app()


async def main(args: argparse.Namespace) -> None:
    app = trivial if args.app == "trivial" else make_real()
    executor = None if args.inline else ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="request")
    loop = asyncio.get_running_loop()
    if args.server == "proto":
        server = await loop.create_server(lambda: Proto(app, executor, args.port), "127.0.0.1", args.port,
                                          backlog=1024)
        print("ready", flush=True)
        await server.serve_forever()
    elif args.server == "fast":  # the real module, app/server/fast_http.py
        from tornado.netutil import bind_sockets

        from app.server.adapter import WSGIAdapter
        from app.server.bodies import BodyLimits
        from app.server.fast_http import FastServer

        adapter = WSGIAdapter(app, executor or ThreadPoolExecutor(max_workers=1), BodyLimits(10 << 20, 1 << 20))
        await FastServer(adapter, None, 10, 75).start(bind_sockets(args.port, "127.0.0.1"))
        print("ready", flush=True)
        await asyncio.Event().wait()
    else:
        from tornado.httpserver import HTTPServer

        from app.server.adapter import WSGIAdapter
        from app.server.bodies import BodyLimits

        limits = BodyLimits(upload=10 << 20, other=1 << 20)
        container = WSGIAdapter(app, executor or ThreadPoolExecutor(max_workers=1), limits)
        HTTPServer(container, xheaders=False, max_body_size=limits.upload).listen(args.port, "127.0.0.1")
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="proto")
    parser.add_argument("--app", default="trivial")
    parser.add_argument("--loop", default="uvloop")
    parser.add_argument("--inline", action="store_true")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    arguments = parser.parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
