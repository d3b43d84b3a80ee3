"""Serve the app with Tornado: `python tornado_server.py [--address A] [--port 5000] [--processes N] [--cpu K]`.

Requests run on a small thread pool per process, one hop each way, so the IOLoop keeps accepting and
writing while a request waits on the database or hashes a password. With ``--processes N`` (0 = one per
core) the parent forks N children and each binds its own ``SO_REUSEPORT`` socket, which the kernel
balances evenly. With ``server.cpu_affinity`` (the default) each child runs on a CPU of its own, from the
``--cpu``-th on; a single process is pinned only when ``--cpu`` is given. HTTPS when ``cert.certfile``
and ``cert.keyfile`` are set. SIGTERM or SIGINT: stop accepting, let in-flight requests finish (at most
``server.shutdown_timeout`` seconds), exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    HTTPServerConnectionDelegate,
    HTTPServerRequest,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.netutil import bind_sockets
from tornado.wsgi import WSGIContainer

log = logging.getLogger("tornado_server")


EXIT_STARTUP = 2  # a setting or option that makes serving impossible; restarting cannot help


class StartupError(Exception):
    """Serving is impossible as configured; the message says why."""


BODILESS = ("204", "304")  # statuses that carry no body, and so no Content-Length (RFC 9110 8.6)


class UnparsedRequest(HTTPMessageDelegate):
    """Collects a request and hands it on with its body unparsed. HTTPServer's default delegate parses form
    bodies itself first, answering a bare 400 (no JSON, no request id) to a multipart body it dislikes before
    the app, which parses the body anyway, can answer with its error envelope."""

    def __init__(self, adapter: WSGIAdapter, connection: HTTPConnection) -> None:
        self.adapter, self.connection = adapter, connection
        self.request: HTTPServerRequest | None = None
        self.chunks: list[bytes] = []

    def headers_received(self, start_line: Any, headers: HTTPHeaders) -> None:
        assert isinstance(start_line, RequestStartLine)
        self.request = HTTPServerRequest(connection=self.connection, start_line=start_line, headers=headers)

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def finish(self) -> None:
        assert self.request is not None
        self.request.body = b"".join(self.chunks)
        self.adapter(self.request)

    def on_connection_close(self) -> None:
        self.chunks.clear()


class WSGIAdapter(WSGIContainer, HTTPServerConnectionDelegate):
    """Runs a request on the thread pool in one hop: the app call, its body and its close() together.

    Tornado's own WSGIContainer hands each body chunk to the pool separately (three hops for a JSON
    answer, each a thread wake-up and an IOLoop wake-up); here the thread returns the finished
    response and the IOLoop only writes it. It also counts requests in flight, for a graceful stop.
    The app writes its own access line (app.access), so Tornado's is not written.
    """

    def __init__(self, wsgi_application: Any, executor: ThreadPoolExecutor) -> None:
        super().__init__(wsgi_application, executor=executor)
        self.in_flight = 0

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        return UnparsedRequest(self, request_conn)

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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the API with Tornado.")
    parser.add_argument("--address", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--processes", type=int, default=1, help="processes to fork; 0 = one per core (default 1)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin this server to one CPU: the n-th one it may use (0-based, wraps around); forked "
                             "processes take the next ones (default: forked processes from 0, one process unpinned)")
    parser.add_argument("--app", default="app:create_app", help="application factory, module:function")
    return parser.parse_args(argv)


def load_factory(spec: str) -> Callable[[], Any]:
    module_name, _, attr = spec.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(module_name), attr or "create_app")
    return factory


def share_metrics() -> None:
    """With metrics on, give this server (and the children it forks) one directory where their values add up;
    before the app is made, because prometheus_client reads it when it is first imported."""
    from app.config import ConfigError, load_configs, project_path

    try:
        settings = load_configs()["metrics"]
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    if settings["enabled"]:
        from app.metrics import use_directory_for

        use_directory_for(os.getpid(), project_path(settings["directory"]))


def pin_to_cpu(index: int) -> None:
    """Run this process and the threads it starts on one CPU: the ``index``-th one it may use, wrapping around.

    The GIL lets one thread run at a time anyway; on one CPU the hand-offs between the IOLoop and the
    request threads (at every Redis or database call) are cheap switches instead of cross-CPU wake-ups,
    which halves what a Redis round trip costs a busy server (README, Performance).
    """
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[index % len(cpus)]
    for thread_id in os.listdir("/proc/self/task"):  # threads already started, and through them later ones
        try:
            os.sched_setaffinity(int(thread_id), {cpu})
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:  # a container may forbid it: serve unpinned
            log.warning("cannot pin process %d to CPU %d: %s", os.getpid(), cpu, exc.strerror)
            return


def make_app(factory: Callable[[], Any]) -> Any:
    from app.config import ConfigError

    try:
        return factory()
    except ConfigError as exc:
        raise StartupError(str(exc)) from None


def listen(args: argparse.Namespace, reuse_port: bool) -> list:
    try:
        return bind_sockets(args.port, args.address, reuse_port=reuse_port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {args.address}:{args.port}: {exc.strerror}") from None


def ssl_context(settings: Any) -> ssl.SSLContext | None:
    certfile, keyfile = settings.cert.certfile, settings.cert.keyfile
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile):
        raise StartupError("set both cert.certfile and cert.keyfile to serve HTTPS, or neither")
    from app.config import project_path

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=project_path(certfile), keyfile=project_path(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load the certificate {certfile} / key {keyfile}: {exc}") from None
    return context


def prepare(app: Any, processes: int) -> None:
    """Checks and one-off work done once, before any fork."""
    settings = app.extensions["configs"]
    if processes != 1 and settings.redis.url.startswith("memory://"):
        raise StartupError("memory:// Redis is one process only; set REDIS_URL to a real server for --processes")
    if settings.database.auto_migrate:
        import flask_migrate

        with app.app_context():
            flask_migrate.upgrade()
    with app.app_context():
        from app.extensions import db

        db.engine.dispose()  # no pooled connection may cross a fork


async def serve(app: Any, sockets: list, tls: ssl.SSLContext | None) -> bool:
    """Serve on ``sockets`` until SIGTERM/SIGINT, then drain in-flight requests and return.

    Returns False when a request or background task was still running at the shutdown timeout: its
    thread must not hold the process, so the caller ends it with ``os._exit``.
    """
    settings = app.extensions["configs"]
    executor = ThreadPoolExecutor(max_workers=settings.server.threads, thread_name_prefix="request")
    container = WSGIAdapter(app, executor)
    server = HTTPServer(container, ssl_options=tls, xheaders=False)
    server.add_sockets(sockets)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    server.stop()  # no new connections
    deadline = time.monotonic() + settings.server.shutdown_timeout
    while time.monotonic() < deadline and (container.in_flight or _writing(server)):
        await asyncio.sleep(0.02)
    requests_done = not container.in_flight
    if not requests_done:
        log.warning("shutdown: %d request(s) still running after %ss", container.in_flight,
                    settings.server.shutdown_timeout)
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=2)
    except TimeoutError:
        log.warning("shutdown: connections still open after 2s")
    executor.shutdown(wait=False, cancel_futures=True)
    # Background work the requests started (@async_task) is accepted work: let it finish.
    drained = await asyncio.to_thread(app.extensions["tasks"].drain, settings.server.shutdown_timeout)
    if not drained:
        log.warning("shutdown: background tasks still running after %ss", settings.server.shutdown_timeout)
    return requests_done and drained


def _writing(server: HTTPServer) -> bool:
    """Whether any connection still has response bytes to flush."""
    return any(conn.stream.writing() for conn in getattr(server, "_connections", ()))


def run_child(factory: Callable[[], Any], args: argparse.Namespace, tls: ssl.SSLContext | None,
              reuse_port: bool, cpu: int | None) -> None:
    if cpu is not None:
        pin_to_cpu(cpu)
    app = make_app(factory)
    asyncio.run(serve(app, listen(args, reuse_port), tls))  # the child ends with os._exit: no thread holds it


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# How a child ends when told to stop: 0 after a graceful stop, or killed by the signal itself when it
# came before the child installed its handlers (still building its app, nothing in flight).
CLEAN_STOPS = {0, -signal.SIGTERM, -signal.SIGINT}


def fork_children(count: int, start: Callable[[int], None]) -> int:
    """Fork ``count`` children running ``start(slot)`` (slot 0 … count-1); forward SIGTERM/SIGINT; respawn crashed ones.

    Returns the exit status for the parent: 0 when every child stopped cleanly on request.
    """
    children: dict[int, int] = {}
    asked_to_stop: set[int] = set()  # only their exit codes decide the parent's
    stopping = False

    def spawn(slot: int) -> None:
        # Stop signals wait until the new child is in ``children``, so forward() reaches it too.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            code = 0
            try:
                start(slot)
            except StartupError as exc:
                print(f"tornado_server.py: {exc}", file=sys.stderr, flush=True)
                code = EXIT_STARTUP
            except BaseException:
                log.exception("server process failed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = slot
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):  # already reaped: it died before the stop
                os.kill(pid, signal.SIGTERM)
                asked_to_stop.add(pid)

    signal.signal(signal.SIGTERM, forward)  # before the first fork: a stop must never orphan a child
    signal.signal(signal.SIGINT, forward)
    for slot in range(count):
        spawn(slot)

    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        slot = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        # The stop signal's handler may run between os.wait() reaping a child that had just died and this check.
        if pid in asked_to_stop:
            status = status or (0 if code in CLEAN_STOPS else 1)
        elif stopping:
            log.error("server process %d exited with %s before the stop reached it", pid, code)
        elif code == EXIT_STARTUP:
            forward(signal.SIGTERM, None)
            status = EXIT_STARTUP
        else:
            log.error("server process %d exited with %s; starting another", pid, code)
            time.sleep(0.5)
            if not stopping:  # a stop signal may have come during the pause
                spawn(slot)
    return status


def url_host(address: str, browsable: bool = False) -> str:
    """``address`` as a URL's host: IPv6 in brackets; with ``browsable``, a wildcard becomes localhost."""
    if browsable and address in ("0.0.0.0", "::", ""):  # noqa: S104
        return "localhost"
    return f"[{address}]" if ":" in address else address


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factory = load_factory(args.app)
    try:
        share_metrics()
        app = make_app(factory)
        tls = ssl_context(app.extensions["configs"])
        processes = args.processes if args.processes > 0 else (os.cpu_count() or 1)
        prepare(app, processes)
        # Bound without SO_REUSEPORT even when children will share the port: a server already on it
        # (another forked instance, whose sockets allow sharing) must be a refusal, not a silent partner.
        sockets = listen(args, reuse_port=False)
    except StartupError as exc:
        print(f"tornado_server.py: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    # Pinned: forked processes one per CPU from --cpu (or 0); a single process only when --cpu says where.
    pinned = app.extensions["configs"].server.cpu_affinity
    first_cpu = args.cpu if args.cpu is not None else 0

    scheme = "https" if tls else "http"
    print(f"Serving on {scheme}://{url_host(args.address)}:{args.port} with {processes} process(es); "
          f"Swagger UI: {scheme}://{url_host(args.address, browsable=True)}:{args.port}/api/", flush=True)
    if processes == 1:
        if pinned and args.cpu is not None:
            pin_to_cpu(args.cpu)
        if not asyncio.run(serve(app, sockets, tls)):
            logging.shutdown()
            os._exit(0)  # a request thread past the shutdown timeout would otherwise hold the exit
        return 0
    for sock in sockets:  # held only to check the port and fail early; each child binds its own
        sock.close()
    del app
    return fork_children(processes, lambda slot: run_child(factory, args, tls, reuse_port=True,
                                                           cpu=first_cpu + slot if pinned else None))


if __name__ == "__main__":
    sys.exit(main())
