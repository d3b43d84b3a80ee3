"""The application factory: config → logging → extensions → API → error handlers → CLI commands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask
from flask_restx import Namespace
from werkzeug.middleware.proxy_fix import ProxyFix

from app import (
    db_deadlines,
    headers,
    i18n,
    metrics,
    models,  # noqa: F401  (registers the tables on db.metadata)
    request_id,
    urls,
)
from app.api import create_api
from app.api.validation import RequestJSONProvider
from app.auth import TokenOnlySessions
from app.cli import register_commands
from app.config import PROJECT_DIR, load_configs, use_settings
from app.errors import error_response
from app.extensions import db, mail, migrate, redis_store, tasks
from app.log_output import configure_logging
from app.logs import init_request_logging
from app.models.user import autogenerate_includes
from app.negotiation import BoundedNegotiation
from app.version import __version__

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> Any:
    """``app.celery``: the Celery app that ``celery -A app worker`` and ``celery -A app beat`` run, with a Flask app
    of the current settings (made on first use, so that importing ``app`` does not import Celery)."""
    if name == "celery":
        from app.jobs import celery_of  # here, not at the top: only worker and beat processes need Celery

        return celery_of(create_app())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_app(
    overrides: Mapping[str, Any] | None = None,
    *,
    extra_namespaces: Iterable[tuple[Namespace, str]] = (),
) -> Flask:
    """Build an app from the settings (``overrides`` merged last) plus any extra namespaces."""
    settings = load_configs(overrides)
    app = Flask(__name__, instance_path=str(PROJECT_DIR / "instance"))
    use_settings(app, settings)
    app.json = RequestJSONProvider(app)  # keys in order, UTF-8 as is; JSON nested too deep to parse is a 400
    app.session_interface = TokenOnlySessions()  # callers sign in with tokens: no cookie session is opened
    configure_logging(settings)

    request_id.init_app(app)
    i18n.init_app(app)
    headers.init_app(app)
    urls.init_app(app)
    init_request_logging(app)
    db.init_app(app)
    db_deadlines.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_DIR / "migrations"), include_object=autogenerate_includes)
    mail.init_app(app)
    redis_store.init_app(app)
    tasks.init_app(app)
    if settings.jobs.backend == "celery":
        from app.jobs import enqueue  # here, not at the top: processes on the thread backend never import Celery

        app.extensions["enqueue"] = enqueue
    create_api(app, extra_namespaces)
    app.register_error_handler(Exception, error_response)
    metrics.init_app(app)
    register_commands(app)
    app.wsgi_app = BoundedNegotiation(app.wsgi_app)  # type: ignore[method-assign]

    proxies = settings.app.trusted_proxies
    if proxies:
        # Never X-Forwarded-Prefix: the app is served at /, and the specs (built once per process) take their base
        # path from the first request's script root, which a client's header would then set for everyone.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies, x_prefix=0
        )
    return app
