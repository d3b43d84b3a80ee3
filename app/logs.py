"""Logging: loads logging.ini, stamps every record with the request id, mails ERRORs when enabled."""

from __future__ import annotations

import logging
import logging.config
from logging.handlers import SMTPHandler
from typing import Any

from app.config import configs, project_path
from app.request_id import current_request_id


class RequestFormatter(logging.Formatter):
    """A formatter whose records carry ``request_id`` ("-" outside a request)."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return super().format(record)


class AdminMailHandler(logging.Handler):
    """Mails each record to ``mail.admins`` when ``log.mail_errors`` is on; silent otherwise."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not configs.log.mail_errors or not configs.mail.admins:
                return
            mail = configs.mail
            smtp = SMTPHandler(
                mailhost=(mail.server, mail.port),
                fromaddr=mail.default_sender,
                toaddrs=list(mail.admins),
                subject=f"[{configs.app.name}] {record.levelname}: {record.getMessage()[:80]}",
                credentials=(mail.username, mail.password) if mail.username else None,
                secure=() if mail.use_tls else None,
                timeout=5.0,
            )
            smtp.setFormatter(self.formatter or RequestFormatter())
            smtp.emit(record)
        except Exception:
            self.handleError(record)


def configure_logging(settings: Any) -> None:
    """Load ``log.ini`` with the file handler writing to ``log.file`` (its directory made)."""
    ini = project_path(settings.log.ini)
    logfile = project_path(settings.log.file)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logging.config.fileConfig(ini, defaults={"logfile": str(logfile)}, disable_existing_loggers=False)
    logging.getLogger().setLevel(settings.log.level.upper())
