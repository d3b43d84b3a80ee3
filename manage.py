"""Command line: `python manage.py db upgrade`, `python manage.py routes`, … (Flask's CLI on create_app)."""

from flask.cli import FlaskGroup

from app import create_app

cli = FlaskGroup(create_app=lambda: create_app())

if __name__ == "__main__":
    cli()
