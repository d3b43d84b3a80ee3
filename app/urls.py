"""Absolute URLs from ``app.public_url``, and the production check that requests name that host.

A URL the API hands out (a file's download URL, Qiniu's callback URL) is ``app.public_url`` + the route's
path, never built from the request's ``Host`` header, which the client chooses. Without ``app.public_url``
(development) the request's own host is used. In production ``app.public_url`` is required and a request whose
Host names another site is 400, except the probes, which build no URL and which load balancers, supervisors,
healthchecks and scrapers call by address (``127.0.0.1:5000``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from flask import Flask, Response, current_app, request, url_for
from werkzeug.routing import RequestRedirect

from app.config import configs
from app.errors import BadRequest, relative_redirect
from app.i18n import _

PROBE_ENDPOINTS = frozenset({"api.health_readiness", "api.health_liveness", "metrics"})


def absolute_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint``: ``app.public_url`` + its path, or the request's host when unset."""
    base = configs.app.public_url.rstrip("/")
    if not base:
        return url_for(endpoint, _external=True, **values)
    return base + current_app.url_map.bind("localhost").build(endpoint, values)


def _port(address: SplitResult) -> int | None:
    """The port ``address`` names, None for none or a default one (80, 443); -1 for one that does not parse."""
    try:
        port = address.port
    except ValueError:
        return -1
    return None if port in (80, 443) else port


def check_host() -> None:
    """In production: 400 for a request whose Host is not ``app.public_url``'s host, nor its port when it names
    one other than 80 or 443 (the probes aside)."""
    settings = configs.app
    if settings.env != "production" or request.endpoint in PROBE_ENDPOINTS:
        return
    wanted = urlsplit(settings.public_url)
    given = urlsplit(f"//{request.host}") if request.host else None
    if given is None or not given.hostname or given.hostname != wanted.hostname or (
            _port(wanted) is not None and _port(given) != _port(wanted)):
        raise BadRequest(_("The Host header names a site this server does not serve."))


def redirect_relatively() -> Response | None:
    """Answer routing's redirects here, relatively: Flask would send Werkzeug's, past every error handler."""
    if isinstance(request.routing_exception, RequestRedirect):
        return relative_redirect(request.routing_exception)
    return None


def init_app(app: Flask) -> None:
    app.before_request(check_host)
    app.before_request(redirect_relatively)
