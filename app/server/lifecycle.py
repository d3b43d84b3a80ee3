"""A server process's life: the app made and checked, migrations at start, serving, and a graceful stop."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import flask_migrate
from tornado.httpserver import HTTPServer

from app.config import ConfigError, load_configs, project_path, settings_of
from app.extensions import db
from app.log_output import log_as_child
from app.metrics import use_directory_for
from app.server.adapter import WSGIAdapter
from app.server.bodies import BodyLimits
from app.server.options import StartupError, http_parser, listen, pin_to_cpu, run_on_loop
from app.server.tornado_logs import hide_client_values

if TYPE_CHECKING:
    from app.server.fast_http import FastServer

log = logging.getLogger(__name__)


def share_metrics() -> None:
    """With metrics on, give this server (and the children it forks) one directory where their values add up;
    before the app is made, because prometheus_client reads it when it is first imported."""
    try:
        settings = load_configs().metrics
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    if settings.enabled:
        use_directory_for(os.getpid(), project_path(settings.directory))


def make_app(factory: Callable[[], Any]) -> Any:
    """The app from ``factory``; settings it refuses are a StartupError."""
    try:
        return factory()
    except ConfigError as exc:
        raise StartupError(str(exc)) from None


def prepare(app: Any, processes: int) -> None:
    """Checks and one-off work done once, before any fork."""
    settings = settings_of(app)
    if processes != 1 and settings.redis.url.startswith("memory://"):
        raise StartupError("memory:// Redis is one process only; set REDIS_URL to a real server for --processes")
    if settings.database.auto_migrate:
        with app.app_context():
            flask_migrate.upgrade()
    with app.app_context():
        db.engine.dispose()  # no pooled connection may cross a fork


async def serve(app: Any, sockets: list[socket.socket], tls: ssl.SSLContext | None) -> bool:
    """Serve on ``sockets`` until SIGTERM/SIGINT, then drain in-flight requests and return.

    Returns False when a request or background task was still running at the shutdown timeout: its
    thread must not hold the process, so the caller ends it with ``os._exit``.
    """
    settings = settings_of(app)
    hide_client_values()
    executor = ThreadPoolExecutor(max_workers=settings.server.threads, thread_name_prefix="request")
    limits = BodyLimits.of(app)
    container = WSGIAdapter(app, executor, limits)
    server: HTTPServer | FastServer
    if http_parser(settings) == "httptools":
        from app.server.fast_http import FastServer  # httptools is optional: imported only when chosen

        server = FastServer(container, tls, settings.server.header_timeout, settings.server.keep_alive_timeout)
        await server.start(sockets)
    else:
        server = HTTPServer(container, ssl_options=tls, xheaders=False, max_body_size=limits.upload)
        server.add_sockets(sockets)

    freeze_startup_objects()
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


def freeze_startup_objects() -> None:
    """Put what start-up made (modules, the app, its routes, models and spec: ~170,000 objects) out of the
    collector's reach, the garbage first. A full collection then walks only what requests made since: under load
    it took 40-135 ms with every thread held, the tail of the p99 (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def _writing(server: HTTPServer | FastServer) -> bool:
    """Whether any connection still has response bytes to flush."""
    if not isinstance(server, HTTPServer):
        return server.writing()
    return any(conn.stream.writing() for conn in getattr(server, "_connections", ()))


def run_child(factory: Callable[[], Any], args: argparse.Namespace, tls: ssl.SSLContext | None,
              reuse_port: bool, cpu: int | None, slot: int) -> None:
    """The ``slot``-th forked process: pinned when ``cpu`` is given, its own log file, app and socket, served until
    stopped."""
    if cpu is not None:
        pin_to_cpu(cpu)
    log_as_child(slot)
    app = make_app(factory)
    run_on_loop(serve(app, listen(args, reuse_port), tls), settings_of(app))  # the child ends with os._exit
