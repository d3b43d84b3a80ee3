"""The application factory: config → logging → extensions → API → error handlers → CLI commands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask
from flask_restx import Namespace
from sqlalchemy.engine import make_url
from werkzeug.middleware.proxy_fix import ProxyFix

from app import (
    headers,
    metrics,
    models,  # noqa: F401  (registers the tables on db.metadata)
    request_id,
    urls,
)
from app.api import create_api
from app.api.validation import RequestJSONProvider
from app.cli import register_commands
from app.config import PROJECT_DIR, load_configs, project_path
from app.decorators import RequestGlobals
from app.errors import error_response
from app.extensions import db, mail, migrate, redis_store, tasks
from app.logs import configure_logging, init_request_logging
from app.version import __version__

__all__ = ["__version__", "create_app"]


def create_app(
    overrides: Mapping[str, Any] | None = None,
    *,
    extra_namespaces: Iterable[tuple[Namespace, str]] = (),
) -> Flask:
    """Build an app from the settings (``overrides`` merged last) plus any extra namespaces."""
    settings = load_configs(overrides)
    app = Flask(__name__, instance_path=str(PROJECT_DIR / "instance"))
    app.app_ctx_globals_class = RequestGlobals
    app.extensions["configs"] = settings
    app.config.update(flask_settings(settings))
    app.json = RequestJSONProvider(app)  # keys in order, UTF-8 as is; JSON nested too deep to parse is a 400
    configure_logging(settings)

    request_id.init_app(app)
    headers.init_app(app)
    urls.init_app(app)
    init_request_logging(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_DIR / "migrations"))
    mail.init_app(app)
    redis_store.init_app(app)
    tasks.init_app(app)
    create_api(app, extra_namespaces)
    app.register_error_handler(Exception, error_response)
    metrics.init_app(app)
    register_commands(app)

    proxies = settings.app.trusted_proxies
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies, x_prefix=proxies
        )
    return app


def database_url(url: str) -> str:
    """The SQLAlchemy URL with a relative SQLite path made absolute (and its directory made)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = project_path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def engine_options(url: str, settings: Any) -> dict[str, Any]:
    """Pool and timeout options so an unreachable database is a quick 503, not a hang."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {}
    # No pool_pre_ping: it costs a round trip on every request. A connection that died in the pool fails its
    # first statement instead; that request answers 503 and SQLAlchemy replaces the pool's connections.
    options: dict[str, Any] = {
        "pool_size": settings.pool_size,
        "pool_timeout": settings.pool_timeout,
        "pool_recycle": 1800,
    }
    if backend == "postgresql":
        options["connect_args"] = {"connect_timeout": max(2, int(settings.connect_timeout))}
    elif backend in ("mysql", "mariadb"):
        options["connect_args"] = {"connect_timeout": settings.connect_timeout}
    return options


def flask_settings(settings: Any) -> dict[str, Any]:
    """Flask and extension settings derived from ours."""
    url = database_url(settings.database.url)
    mail = settings.mail
    return {
        "SECRET_KEY": settings.app.secret_key,
        "DEBUG": settings.app.debug,
        "TESTING": settings.app.env == "testing",
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(url, settings.database),
        "SQLALCHEMY_ECHO": settings.database.echo,
        # Room for multipart headers around an upload of files.max_size bytes.
        "MAX_CONTENT_LENGTH": settings.files.max_size + 64 * 1024,
        "MAIL_SERVER": mail.server,
        "MAIL_PORT": mail.port,
        "MAIL_USE_TLS": mail.use_tls,
        "MAIL_USE_SSL": mail.use_ssl,
        "MAIL_USERNAME": mail.username or None,
        "MAIL_PASSWORD": mail.password or None,
        "MAIL_DEFAULT_SENDER": mail.default_sender,
        "MAIL_SUPPRESS_SEND": mail.suppress,
        "MAIL_DEBUG": mail.debug,  # Flask-Mail would follow app.debug and print reset codes
        "RESTX_JSON": {"ensure_ascii": False},
        "RESTX_MASK_SWAGGER": False,
        "ERROR_INCLUDE_MESSAGE": False,
        "PROPAGATE_EXCEPTIONS": False,
    }
