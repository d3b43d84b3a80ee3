"""Command line: `python manage.py db upgrade`, `python manage.py routes`, … (Flask's CLI on create_app)."""

import os
import sys

from flask.cli import FlaskGroup

from app import create_app
from app.config import ConfigError


def make_app():
    """The app; settings it refuses end the command with their one-line reason, as tornado_server.py does."""
    try:
        return create_app()
    except ConfigError as exc:
        sys.exit(f"manage.py: {exc}")


# Commands (a migration's ALTER, a large prune) may take longer than a request: no database.query_timeout unless
# the environment sets one (docs/operations.md, Deadlines).
os.environ.setdefault("APP_DATABASE__QUERY_TIMEOUT", "0")
cli = FlaskGroup(create_app=make_app)

if __name__ == "__main__":
    cli()
