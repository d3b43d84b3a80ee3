"""Commands added to Flask's CLI: `python manage.py create-admin`."""

from __future__ import annotations

import click
from flask import Flask

from app.errors import APIError
from app.services.users import create_user


@click.command("create-admin")
@click.option("--phone", prompt=True, help="11-digit mainland mobile number or E.164")
@click.option("--nickname", prompt=True, default="admin", show_default=True)
@click.option("--email", default="", help="optional")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="8 to 128 characters, not easily guessed; prompted (hidden) when omitted")
def create_admin(phone: str, nickname: str, email: str, password: str) -> None:
    """Create an admin account (the first one, typically)."""
    try:
        user = create_user(phone, password, nickname, email or None, role="admin")
    except APIError as exc:
        raise click.ClickException(f"{exc.field or 'error'}: {exc.message}") from None
    click.echo(f"admin {user.phone} created with id {user.id}")


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
