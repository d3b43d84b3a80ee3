"""Commands added to Flask's CLI: `python manage.py create-admin`, `python manage.py mfa-reset`."""

from __future__ import annotations

import click
from flask import Flask

from app.errors import APIError
from app.services import mfa
from app.services.phones import normalize_phone
from app.services.users import create_user, find_by_phone


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


@click.command("mfa-reset")
@click.option("--phone", required=True, help="the account's phone number")
@click.confirmation_option(prompt="Turn this account's second factor off and end its sessions?")
def mfa_reset(phone: str) -> None:
    """Turn off the second factor of a user who lost it and their recovery codes, after you proved who they are
    outside the app; their sessions end, and they can log in with the password alone and enrol again."""
    try:
        user = find_by_phone(normalize_phone(phone))
        if user is None:
            raise click.ClickException("no account uses this phone number")
        mfa.reset_second_factor(user)
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"the second factor of user {user.id} is off; their sessions ended")


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(mfa_reset)
