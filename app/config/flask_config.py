"""Flask's and its extensions' settings (``app.config``), derived from ours."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

from app.config.loading import project_path
from app.config.sections import DatabaseSettings, Settings


def database_url(url: str) -> str:
    """The SQLAlchemy URL with a relative SQLite path made absolute (and its directory made)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = project_path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


# libpq: a peer gone from the network (packets dropped, no reset) is noticed within about 25 s even while idle or
# in a long statement without deadline (a migration); the app's deadlines (app/db_deadlines.py) bound requests.
PG_NETWORK = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
              "tcp_user_timeout": 25_000}


def engine_options(url: str, settings: DatabaseSettings) -> dict[str, Any]:
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
        options["connect_args"] = {"connect_timeout": max(2, int(settings.connect_timeout)), **PG_NETWORK}
    elif backend in ("mysql", "mariadb"):
        options["connect_args"] = {"connect_timeout": settings.connect_timeout}
    return options


def flask_settings(settings: Settings) -> dict[str, Any]:
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
