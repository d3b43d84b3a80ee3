"""Tornado's own log lines, without the values a client sent.

Tornado logs a malformed request with the offending text, e.g. ``Malformed HTTP message from 1.2.3.4:
Invalid header value 'TOKEN\\x01'``: a token or password a client sent in a broken header would reach
app.log. The exceptions in its log lines keep only their description, up to the first quoted or colon-
separated value; the value itself becomes the same marker that app.logs.redact puts in place of a secret.
"""

from __future__ import annotations

import logging
import re

from tornado.httputil import HTTPInputError

from app.logs import REDACTED

TORNADO_LOGGERS = ("tornado.general", "tornado.application", "tornado.access")
VALUE_START = re.compile(r"[:'\"]")


def without_values(exc: BaseException) -> str:
    """``exc``'s message cut before the first value it quotes: "Invalid header value [redacted]"."""
    text = str(exc)
    kept = VALUE_START.split(text, maxsplit=1)[0].rstrip()
    return text if kept == text else f"{kept} {REDACTED}"


class ClientValuesFilter(logging.Filter):
    """Rewrites the exceptions among a record's arguments (and an input error's traceback) to their description."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(without_values(arg) if isinstance(arg, BaseException) else arg
                                for arg in record.args)
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HTTPInputError):  # its traceback ends in the message with the value
            record.exc_info, record.exc_text = None, None
            note = f" (HTTPInputError: {without_values(exc)})"
            record.msg = f"{record.msg}{note.replace('%', '%%') if record.args else note}"
        return True


def hide_client_values() -> None:
    """Filter Tornado's loggers (once per process; the app's logging setup keeps logger filters)."""
    for name in TORNADO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientValuesFilter) for f in logger.filters):
            logger.addFilter(ClientValuesFilter())
