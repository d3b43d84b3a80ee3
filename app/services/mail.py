"""Email: one send_email() that renders text and HTML templates and sends in the background, once.

``mail.backend`` says where mail goes: ``smtp`` (Flask-Mail, through ``mail.server``) or ``console`` (the log,
text part included, as the SMS console gateway does; the development default, so that registering with an
email and resetting a password by email work without an SMTP server).

A letter waits for its worker sealed under SECRET_KEY (app/services/sealing.py): the reset codes in it cannot be
read from Redis. A mail is a task (@async_task) that may run more than once: retried after a temporary SMTP
failure, or run again by another worker after one died mid-task. Each mail has an id; once the SMTP server has
accepted it, the id is kept in Redis and a later run sends nothing. (A worker that dies between the server's
"250 OK" and that write sends it twice: the window is one Redis call wide.)
"""

from __future__ import annotations

import json
import logging
import smtplib
import uuid
from typing import Any

import flask_mail
from flask import current_app, render_template

from app.config import configs
from app.extensions import redis_store
from app.services.sealing import seal, unseal
from app.tasks import TemporaryError, async_task

log = logging.getLogger(__name__)

SENT_TTL = 7 * 24 * 3600  # seconds a sent mail's id is kept: longer than any retry schedule
SEALED_AS = "mail"  # the purpose whose key seals a letter while it waits in the job queue


class _Connection(flask_mail.Connection):
    """Flask-Mail's SMTP connection with a timeout (it has none: a hung server would hold a worker forever)."""

    def configure_host(self) -> smtplib.SMTP:
        settings = configs.mail
        kind = smtplib.SMTP_SSL if settings.use_ssl else smtplib.SMTP
        host = kind(settings.server, settings.port, timeout=settings.timeout)
        host.set_debuglevel(int(settings.debug))
        if settings.use_tls:
            host.starttls()
        if settings.username and settings.password:
            host.login(settings.username, settings.password)
        return host


def _temporary(exc: Exception) -> bool:
    """Worth trying again later: the server is unreachable, hung up, or answered a 4xx (try later)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    return isinstance(exc, OSError | smtplib.SMTPServerDisconnected)


def _message(letter: dict[str, Any]) -> flask_mail.Message:
    message = flask_mail.Message(subject=letter["subject"], recipients=list(letter["to"]), body=letter["text"],
                                 html=letter["html"])
    sender = message.sender if isinstance(message.sender, str) else message.sender[1]
    domain = (sender or "localhost").rpartition("@")[2].strip("> ") or "localhost"
    message.msgId = f"<{letter['id']}@{domain}>"  # the same on every try: a duplicate is recognisable
    return message


def _send(message: flask_mail.Message) -> None:
    state = current_app.extensions["mail"]
    try:
        if state.suppress:
            state.send(message)  # tests: recorded, not sent
        else:
            with _Connection(state) as connection:
                connection.send(message)
    except Exception as exc:
        if _temporary(exc):
            raise TemporaryError(f"SMTP: {type(exc).__name__}: {exc}") from exc
        raise


@async_task
def deliver(sealed: str) -> None:
    """Send the sealed letter (``{"id", "to", "subject", "text", "html"}``) unless it was sent already."""
    letter = json.loads(unseal(SEALED_AS, sealed))
    if configs.mail.backend == "console":
        log.info("mail to %s: %s\n%s", ", ".join(letter["to"]), letter["subject"], letter["text"])
        return
    sent = redis_store.key("mail", "sent", letter["id"])
    if redis_store.exists(sent):
        log.info("mail %s was sent already", letter["id"])
        return
    sending = redis_store.key("mail", "sending", letter["id"])
    # One run at a time: a copy another worker took over after the visibility timeout waits for this one to end.
    if not redis_store.set(sending, "1", nx=True, ex=configs.jobs.visibility_timeout):
        raise TemporaryError("another run is sending this mail")
    try:
        _send(_message(letter))
        redis_store.set(sent, "1", ex=SENT_TTL)
    finally:
        redis_store.delete(sending)
    log.info("mail %r sent to %d recipient(s)", letter["subject"], len(letter["to"]))


def send_email(to: str | list[str], subject: str, template: str, **context: Any) -> Any:
    """Render ``email/<template>.txt`` and ``.html`` with ``context`` and send them; returns the task's handle."""
    context = {"app_name": configs.app.name, **context}
    letter = {
        "id": uuid.uuid4().hex,
        "to": [to] if isinstance(to, str) else list(to),
        "subject": f"[{configs.app.name}] {subject}",
        "text": render_template(f"email/{template}.txt", **context),
        "html": render_template(f"email/{template}.html", **context),
    }
    return deliver(seal(SEALED_AS, json.dumps(letter)))  # a reset code waiting in Redis is not readable there
