"""Serve the app with Tornado: `python tornado_server.py [--address A] [--port 5000] [--processes N] [--cpu K]`.

Requests run on a small thread pool per process, one hop each way, so the IOLoop keeps accepting and
writing while a request waits on the database or hashes a password. With ``--processes N`` (0 = one per
core) the parent forks N children and each binds its own ``SO_REUSEPORT`` socket, which the kernel
balances evenly. With ``server.cpu_affinity`` (the default) each child runs on a CPU of its own, from the
``--cpu``-th on; a single process is pinned only when ``--cpu`` is given. HTTPS when ``cert.certfile``
and ``cert.keyfile`` are set. SIGTERM or SIGINT: stop accepting, let in-flight requests finish (at most
``server.shutdown_timeout`` seconds), exit 0.

The parts live in app/server/: adapter.py (WSGI on the thread pool), options.py (command line, TLS, CPU
pinning), lifecycle.py (start-up checks, migrations, serving, graceful stop), prefork.py (forked children).
"""

from __future__ import annotations

import logging
import os
import sys

from app.config import settings_of
from app.server.lifecycle import make_app, prepare, run_child, serve, share_metrics
from app.server.options import (
    EXIT_STARTUP,
    StartupError,
    event_loop_factory,
    http_parser,
    listen,
    load_factory,
    parse_args,
    pin_to_cpu,
    run_on_loop,
    ssl_context,
    url_host,
)
from app.server.prefork import fork_children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    factory = load_factory(args.app)
    try:
        share_metrics()
        app = make_app(factory)
        tls = ssl_context(settings_of(app))
        processes = args.processes if args.processes > 0 else (os.cpu_count() or 1)
        prepare(app, processes)
        event_loop_factory(settings_of(app))  # uvloop asked for but missing: refused here, before any fork
        parser = http_parser(settings_of(app))  # likewise httptools
        # Bound without SO_REUSEPORT even when children will share the port: a server already on it
        # (another forked instance, whose sockets allow sharing) must be a refusal, not a silent partner.
        sockets = listen(args, reuse_port=False)
    except StartupError as exc:
        print(f"tornado_server.py: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    # Pinned: forked processes one per CPU from --cpu (or 0); a single process only when --cpu says where.
    pinned = settings_of(app).server.cpu_affinity
    first_cpu = args.cpu if args.cpu is not None else 0

    scheme = "https" if tls else "http"
    print(f"Serving on {scheme}://{url_host(args.address)}:{args.port} with {processes} process(es), HTTP/1.1 "
          f"parsed by {parser}; "
          f"Swagger UI: {scheme}://{url_host(args.address, browsable=True)}:{args.port}/api/", flush=True)
    if processes == 1:
        if pinned and args.cpu is not None:
            pin_to_cpu(args.cpu)
        if not run_on_loop(serve(app, sockets, tls), settings_of(app)):
            logging.shutdown()
            os._exit(0)  # a request thread past the shutdown timeout would otherwise hold the exit
        return 0
    for sock in sockets:  # held only to check the port and fail early; each child binds its own
        sock.close()
    del app
    return fork_children(processes, lambda slot: run_child(factory, args, tls, reuse_port=True,
                                                           cpu=first_cpu + slot if pinned else None, slot=slot))


if __name__ == "__main__":
    sys.exit(main())
