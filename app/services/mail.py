"""Email: one send_email() that renders text and HTML templates and sends in the background.

``mail.backend`` says where mail goes: ``smtp`` (Flask-Mail, through ``mail.server``) or ``console`` (the log,
text part included, as the SMS console gateway does; the development default, so that registering with an
email and resetting a password by email work without an SMTP server).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template
from flask_mail import Message

from app.config import configs
from app.extensions import mail
from app.tasks import async_task

log = logging.getLogger(__name__)


@async_task
def _deliver(message: Message) -> None:
    if configs.mail.backend == "console":
        log.info("mail to %s: %s\n%s", ", ".join(map(str, message.recipients)), message.subject, message.body)
        return
    mail.send(message)
    log.info("mail %r sent to %d recipient(s)", message.subject, len(message.recipients))


def send_email(to: str | list[str], subject: str, template: str, **context: Any) -> Any:
    """Render ``email/<template>.txt`` and ``.html`` with ``context`` and send them; returns the task's Future."""
    recipients: list[str | tuple[str, str]] = [to] if isinstance(to, str) else list(to)
    context = {"app_name": configs.app.name, **context}
    message = Message(
        subject=f"[{configs.app.name}] {subject}",
        recipients=recipients,
        body=render_template(f"email/{template}.txt", **context),
        html=render_template(f"email/{template}.html", **context),
    )
    return _deliver(message)
