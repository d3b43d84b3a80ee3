"""Commands added to Flask's CLI: `python manage.py create-admin`, `python manage.py prune-events`."""

from __future__ import annotations

import click
from flask import Flask

from app.config import configs
from app.errors import APIError
from app.services import security_events
from app.services.users import create_user


@click.command("create-admin")
@click.option("--phone", prompt=True, help="11-digit mainland mobile number or E.164")
@click.option("--nickname", prompt=True, default="admin", show_default=True)
@click.option("--email", default="", help="optional")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="8 to 128 characters; prompted (hidden) when omitted")
def create_admin(phone: str, nickname: str, email: str, password: str) -> None:
    """Create an admin account (the first one, typically)."""
    try:
        user = create_user(phone, password, nickname, email or None, role="admin")
    except APIError as exc:
        raise click.ClickException(f"{exc.field or 'error'}: {exc.message}") from None
    click.echo(f"admin {user.phone} created with id {user.id}")


@click.command("prune-events")
def prune_events() -> None:
    """Delete the security events older than auth.events_ttl_days (run it daily: cron, or a beat job)."""
    click.echo(f"{security_events.prune()} security event(s) older than "
               f"{configs.auth.events_ttl_days} days deleted")


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(prune_events)
