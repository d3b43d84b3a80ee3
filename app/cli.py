"""Commands added to Flask's CLI: `python manage.py create-admin`, `mfa-reset`, `end-sessions`, the periodic
clean-ups `prune-events`, `prune-sessions`, `prune-files`, `jobs-ping` (do the Celery workers answer?),
`deploy-check` (fab deploy's look at a host's settings) and `new-resource` (a resource's code, app/scaffold)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import click
from flask import Flask, current_app

from app.config import PROJECT_DIR, configs, settings_of
from app.errors import APIError
from app.scaffold import kinds, migration, resource
from app.services import mfa, security_events, session_control, sessions
from app.services.file_cleanup import prune_files as prune_stored_files
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


def _needs_shared_redis() -> None:
    """Sessions live in the server's Redis: with ``memory://`` each process has its own, which this command cannot
    reach, so it would say sessions ended while they live on. Refuse instead."""
    if configs.redis.url.startswith("memory://"):
        raise click.ClickException(
            "the Redis URL is memory://, the server process's own store, which this command cannot reach: set "
            "REDIS_URL to the server's Redis (a development server's sessions end when it restarts)")


@click.command("mfa-reset")
@click.option("--phone", required=True, help="the account's phone number")
@click.confirmation_option(prompt="Turn this account's second factor off and end its sessions?")
def mfa_reset(phone: str) -> None:
    """Turn off the second factor of a user who lost it and their recovery codes, after you proved who they are
    outside the app; their sessions end, and they can log in with the password alone and enrol again. Needs the
    server's Redis (REDIS_URL)."""
    _needs_shared_redis()
    try:
        user = find_by_phone(normalize_phone(phone))
        if user is None:
            raise click.ClickException("no account uses this phone number")
        mfa.reset_second_factor(user)
    except APIError as exc:
        raise click.ClickException(str(exc.message)) from None
    click.echo(f"the second factor of user {user.id} is off; their sessions ended")


@click.command("end-sessions")
@click.option("--phone", help="end every session of the account with this phone number")
@click.option("--all", "everyone", is_flag=True, help="end every session of every user")
def end_sessions(phone: str | None, everyone: bool) -> None:
    """End sessions at once on every process sharing the Redis: one user's (--phone) or everyone's (--all), e.g.
    after a leaked SECRET_KEY or database. Needs the production Redis URL (REDIS_URL)."""
    if bool(phone) == everyone:
        raise click.UsageError("give --phone or --all")
    _needs_shared_redis()
    if everyone:
        click.echo(f"{session_control.end_every_session()} session(s) ended")
        return
    try:
        user = find_by_phone(normalize_phone(phone or ""))
    except APIError as exc:
        raise click.ClickException(str(exc.message)) from None
    if user is None:
        raise click.ClickException("no account uses this phone number")
    session_control.end_user_sessions(user)
    click.echo(f"every session of user {user.id} ended")


@click.command("prune-events")
def prune_events() -> None:
    """Delete the security events older than auth.events_ttl_days (run it daily: cron, or a beat job)."""
    click.echo(f"{security_events.prune()} security event(s) older than "
               f"{configs.auth.events_ttl_days} days deleted")


@click.command("prune-sessions")
def prune_sessions() -> None:
    """Remove expired sessions from the per-user session index in Redis (run it daily: cron, or a beat job). Needs
    the server's Redis (REDIS_URL)."""
    _needs_shared_redis()
    click.echo(f"{sessions.prune_session_index()} expired session(s) removed from the index")


@click.command("prune-files")
@click.option("--grace", type=click.IntRange(min=0), default=None, metavar="SECONDS",
              help="spare stored bytes younger than this (default files.orphan_grace)")
@click.option("--dry-run", is_flag=True, help="count, delete nothing")
@click.option("--force", is_flag=True, help="delete the rows even when more than 10 and 20 %% of the S3 rows seem lost")
def prune_files(grace: int | None, dry_run: bool, force: bool) -> None:
    """Delete stored bytes that no file row names (older than the grace period: an upload writes its bytes before
    its row) and file rows whose bytes are gone (run it daily: cron, or a beat job)."""
    try:
        counts = prune_stored_files(grace_seconds=grace, dry_run=dry_run, force=force)
    except APIError as exc:  # the store cannot be asked (503) or is not configured (501): say so, exit 1
        raise click.ClickException(str(exc.message)) from None
    verb = "would be deleted" if dry_run else "deleted"
    click.echo(f"{counts['orphan_objects']} stored object(s) without a row {verb}")
    click.echo(f"{counts['rows_without_bytes']} file row(s) without bytes {verb}")


@click.command("jobs-ping")
@click.argument("nodes", nargs=-1)
@click.option("--timeout", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="seconds to wait for the answers")
def jobs_ping(nodes: tuple[str, ...], timeout: float) -> None:
    """Wait until the Celery workers NODES answer a ping (names as their -n gives them: worker-0@%h; any one worker
    when none is named); exit status 1 naming those that did not answer. Whatever jobs.backend says: the workers
    run beat's periodic jobs on either."""
    from celery.utils.nodenames import host_format  # here, not at the top: only this command needs Celery

    from app.jobs import celery_of  # and this module imports Celery

    wanted = {host_format(node) for node in nodes}
    answered: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (answered >= wanted if wanted else answered):
        replies = celery_of(current_app).control.ping(destination=sorted(wanted - answered) or None, timeout=1.0)
        answered.update(name for reply in replies for name in reply)
    for name in sorted(answered):
        click.echo(f"{name}: pong")
    missing = sorted(wanted - answered) if wanted else ([] if answered else ["any worker"])
    if missing:
        raise click.ClickException(f"no answer within {timeout:g} s from {', '.join(missing)}")


@click.command("deploy-check")
def deploy_check() -> None:
    """Load the settings as the servers do (a problem ends it with exit status 1 and the reason) and print what
    must be the same on every host as JSON: a fingerprint of SECRET_KEY (codes, tickets and sealed mails in the
    shared Redis are made under it), from which the key cannot be learnt."""
    secret = settings_of(current_app).app.secret_key.encode()
    fingerprint = hmac.new(secret, b"flask-restx-starter deploy fingerprint", hashlib.sha256).hexdigest()[:16]
    click.echo(json.dumps({"secret_key": fingerprint}))


@click.command("new-resource")
@click.argument("name")
@click.option("--fields", "spec", default=kinds.DEFAULT_FIELDS, show_default=True, metavar="NAME:TYPE,…",
              help=f"the resource's fields; types: {', '.join(kinds.KINDS)}")
def new_resource(name: str, spec: str) -> None:
    """Write resource NAME (singular, snake_case: order_item): its model, migration, service, namespace at
    /api/<plural> (each user's own rows; an admin's are everyone's) and HTTP tests, registered. Writes nothing when
    NAME or a field is refused."""
    try:
        planned = resource.plan_resource(name, spec)
        written = resource.write(resource.render(planned))
        try:
            path = migration.write_migration(f"app.models.{planned.name}", planned.plural)
        except BaseException:
            resource.undo(written)
            raise
    except kinds.ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    for file in [*written, path]:
        click.echo(f"wrote {file.relative_to(PROJECT_DIR)}")
    click.echo(f"next: .venv/bin/python manage.py db upgrade, restart the server (make dev restarts by itself), "
               f"make lint, .venv/bin/python -m pytest tests/api/test_{planned.plural}.py")


def register_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(mfa_reset)
    app.cli.add_command(end_sessions)
    app.cli.add_command(prune_events)
    app.cli.add_command(prune_sessions)
    app.cli.add_command(prune_files)
    app.cli.add_command(jobs_ping)
    app.cli.add_command(deploy_check)
    app.cli.add_command(new_resource)
