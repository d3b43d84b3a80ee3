"""The command line, and what it is turned into: the app factory, listening sockets, TLS, CPU pinning."""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from tornado.netutil import bind_sockets

from app.config import Settings, project_path
from app.cpus import note_before_pinning

log = logging.getLogger(__name__)

EXIT_STARTUP = 2  # a setting or option that makes serving impossible; restarting cannot help


class StartupError(Exception):
    """Serving is impossible as configured; the message says why."""


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
    """The application factory named ``module:function`` (``create_app`` when the function is left out)."""
    module_name, _, attr = spec.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(module_name), attr or "create_app")
    return factory


def listen(args: argparse.Namespace, reuse_port: bool) -> list[socket.socket]:
    """The sockets for ``--address``/``--port``; a port that cannot be had is a StartupError."""
    try:
        return bind_sockets(args.port, args.address, reuse_port=reuse_port)
    except OSError as exc:
        hint = " (another server has it? choose a port: --port N, or make run SERVER_ARGS=\"--port N\")" \
            if exc.errno == errno.EADDRINUSE else ""
        raise StartupError(f"cannot listen on {args.address}:{args.port}: {exc.strerror}{hint}") from None


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for ``cert.certfile`` and ``cert.keyfile``; None (plain HTTP) when neither is set."""
    certfile, keyfile = settings.cert.certfile, settings.cert.keyfile
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile):
        raise StartupError("set both cert.certfile and cert.keyfile to serve HTTPS, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=project_path(certfile), keyfile=project_path(keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load the certificate {certfile} / key {keyfile}: {exc}") from None
    return context


def event_loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop ``server.event_loop`` asks for: uvloop's (its transports, timers and thread wake-ups are C) or
    None for asyncio's own. ``auto`` takes uvloop where it is installed (not on Windows)."""
    choice = settings.server.event_loop
    if choice == "asyncio":
        return None
    try:
        import uvloop  # optional: not on Windows, and "asyncio" never needs it
    except ImportError:
        if choice == "uvloop":
            raise StartupError("server.event_loop is uvloop, which is not installed: pip install uvloop") from None
        return None
    return uvloop.new_event_loop


def http_parser(settings: Settings) -> str:
    """Who parses HTTP/1.1 by ``server.http``: "httptools" (llhttp, in C) when asked for or, for ``auto``,
    installed; else "tornado". Refuses ``httptools`` when it is not installed (called before any fork)."""
    choice = settings.server.http
    if choice == "tornado":
        return choice
    try:
        import httptools  # noqa: F401  optional: pip install httptools
    except ImportError:
        if choice == "httptools":
            raise StartupError("server.http is httptools, which is not installed: pip install httptools") from None
        return "tornado"
    return "httptools"


def run_on_loop(main: Coroutine[Any, Any, Any], settings: Settings) -> Any:
    """``asyncio.run(main)`` on the loop ``server.event_loop`` chooses."""
    with asyncio.Runner(loop_factory=event_loop_factory(settings)) as runner:
        return runner.run(main)


def pin_to_cpu(index: int) -> None:
    """Run this process and the threads it starts on one CPU: the ``index``-th one it may use, wrapping around.

    The GIL lets one thread run at a time anyway; on one CPU the hand-offs between the IOLoop and the
    request threads (at every Redis or database call) are cheap switches instead of cross-CPU wake-ups,
    which halves what a Redis round trip costs a busy server (README, Performance). Password hashing threads
    leave it for any CPU (app/services/passwords.py): a hash lets go of the GIL for 0.3 s.
    """
    note_before_pinning()
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


def url_host(address: str, browsable: bool = False) -> str:
    """``address`` as a URL's host: IPv6 in brackets; with ``browsable``, a wildcard becomes localhost."""
    if browsable and address in ("0.0.0.0", "::", ""):  # noqa: S104
        return "localhost"
    return f"[{address}]" if ":" in address else address
