"""Prometheus metrics at ``/metrics``: requests by endpoint, method and status, their latency, and outages.

Off unless ``metrics.enabled``; when ``metrics.token`` is set, a scrape must send ``Authorization: Bearer
<token>``. The endpoint label is the route pattern (``/api/users/<int:user_id>``), never the raw path, so
the number of series stays bounded.

Several processes: prometheus_client's multiprocess mode, where each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any one of them adds up all. tornado_server.py gives every server
(the parent and its forked children) one fresh directory under ``metrics.directory`` before the app is imported
(:func:`use_directory_for`); separate servers (supervisor's, on their own ports) are scraped one by one.
"""

from __future__ import annotations

import hmac
import os
import shutil
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

from app.config import configs, settings_of
from app.errors import NotAuthorized, on_outage
from app.i18n import _

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def use_directory_for(server_pid: int, parent: Path) -> Path:
    """Before prometheus_client is imported: one fresh multiprocess directory for this server, removing those
    of servers that are no longer running."""
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        if old.name.isdigit() and not Path(f"/proc/{old.name}").exists():
            shutil.rmtree(old, ignore_errors=True)
    directory = parent / str(server_pid)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


class Metrics:
    """The metric objects, made once per process (prometheus_client keeps them in a global registry)."""

    def __init__(self) -> None:
        # Imported on first use: prometheus_client picks its multiprocess mode from PROMETHEUS_MULTIPROC_DIR when
        # first imported, which use_directory_for sets after this module is imported.
        from prometheus_client import Counter, Histogram

        self.requests = Counter("http_requests_total", "Requests answered, by route, method and status",
                                ["endpoint", "method", "status"])
        self.latency = Histogram("http_request_duration_seconds", "Seconds from request to response, by route",
                                 ["endpoint", "method"], buckets=BUCKETS)
        self.outages = Counter("dependency_errors_total", "Requests answered 503 because a dependency failed",
                               ["dependency", "error"])


_metrics: Metrics | None = None


def metrics() -> Metrics:
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def record_outage(exc: BaseException) -> None:
    """Count a database or Redis failure that a request answered with 503 (an app.errors outage listener)."""
    dependency = "redis" if type(exc).__module__.startswith("redis") else "database"
    metrics().outages.labels(dependency, type(exc).__name__).inc()


def _endpoint() -> str:
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _record(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        endpoint, method = _endpoint(), request.method
        m = metrics()
        m.requests.labels(endpoint, method, str(response.status_code)).inc()
        m.latency.labels(endpoint, method).observe(time.perf_counter() - started)
    return response


def _scrape() -> Any:
    # Imported on first use, as in Metrics: the multiprocess directory must be set before.
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    token = configs.metrics.token
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        raise NotAuthorized(_("Send the metrics token: Authorization: Bearer <metrics.token>."))
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    if not settings_of(app).metrics.enabled:
        return
    metrics()
    on_outage(record_outage)
    app.before_request(_start_timer)
    app.after_request(_record)
    app.add_url_rule("/metrics", "metrics", _scrape)
