"""Logging: the formatters that stamp every record with the request id, ERROR mails when enabled, one access line
per request and @log_record's detail lines with secrets redacted. Where the lines go (logging.ini's handlers, the
log files): app/log_output.py.

What a client sends (a path, a query, a header, a field name) reaches log lines as record arguments. Each line
stays one line whatever they hold: the formatters here escape control and line-separator characters (``\\n``,
``\\x1b``, ``\\u2028``) and cut every argument and every message to a bounded length, in one place for
every logger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from logging.handlers import SMTPHandler
from typing import Any

from flask import Flask, Response, g, request

from app import auth
from app.config import configs
from app.request_id import current_request_id

access_log = logging.getLogger("app.access")
record_log = logging.getLogger("app.record")
REDACTED = "[redacted]"
ARG_LIMIT = 4096  # characters of one string argument of a log record
MESSAGE_LIMIT = 16384  # characters of one message
# Parts of key names whose values are never logged, compared letters only, in lower case ("API-Key" → "apikey").
SECRET_WORDS = ("pass", "pwd", "secret", "token", "code", "key", "auth", "cookie", "ticket", "otp", "sign",
                "credential", "private", "session")
# What would end a line, move the cursor or colour a terminal, or reorder text (bidi controls): C0, DEL, C1,
# U+2028/U+2029 and the bidi embeddings, overrides and isolates.
_UNSAFE = (*range(0x20), *range(0x7F, 0xA0), 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A))
_ESCAPES = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNSAFE} | {9: "\\t", 10: "\\n", 13: "\\r"}
# The same characters as JSON escapes, for those json.dumps leaves as they are (it escapes C0 itself).
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in _UNSAFE if c >= 0x20}


def _bounded(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (saying how many were cut), lone surrogates escaped."""
    if len(text) > limit:
        kept = limit - 24  # room for the note
        text = text[:kept] + f"…(+{len(text) - kept} chars)"
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` with control and line-separator characters escaped, cut to ``limit`` characters."""
    if not text.isprintable():
        text = text.translate(_ESCAPES)
    return _bounded(text, limit)


def bounded_message(record: logging.LogRecord) -> str:
    """The record's message with each string argument, and the whole, cut to a bounded length (not escaped)."""
    args: Any = record.args
    if not args:
        return _bounded(str(record.msg), MESSAGE_LIMIT)
    if isinstance(args, Mapping):
        args = {key: _bounded(v, ARG_LIMIT) if isinstance(v, str) else v for key, v in args.items()}
    else:
        args = tuple(_bounded(v, ARG_LIMIT) if isinstance(v, str) else v for v in args)
    return _bounded(str(record.msg) % args, MESSAGE_LIMIT)


class RequestFormatter(logging.Formatter):
    """A formatter whose records carry ``request_id`` ("-" outside a request), and whose every line is one line:
    the message is escaped and bounded (``one_line``), a traceback keeps its line breaks and nothing else."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = "\n".join(one_line(line) for line in record.exc_text.split("\n"))
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(bounded_message(record))
        record.request_id = one_line(str(record.request_id), 128)  # type: ignore[attr-defined]
        return super().formatMessage(record)


class JsonFormatter(RequestFormatter):
    """One JSON object per line: time, level, logger, process, request id, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        super().format(record)  # fills request_id, message and exc_text
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "request_id": record.request_id,  # type: ignore[attr-defined]
            "message": bounded_message(record),
        }
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False).translate(_JSON_ESCAPES)


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
                subject=f"[{configs.app.name}] {record.levelname}: {one_line(bounded_message(record), 80)}",
                credentials=(mail.username, mail.password) if mail.username else None,
                secure=() if mail.use_tls else None,
                timeout=5.0,
            )
            smtp.setFormatter(self.formatter or RequestFormatter())
            smtp.emit(record)
        except Exception:
            self.handleError(record)


def _letters(name: object) -> str:
    return "".join(c for c in str(name).lower() if "a" <= c <= "z")


def redact(value: Any, secret_keys: Iterable[str], depth: int = 0) -> Any:
    """``value`` with the value of every key that looks secret replaced, at any depth: a key whose letters (lower
    case, nothing else) contain one of ``SECRET_WORDS`` or of ``secret_keys`` ("pass word", "X-Api-Key")."""
    words = secret_keys if depth else tuple({*SECRET_WORDS, *filter(None, map(_letters, secret_keys))})
    if depth > 20:
        return "…"
    if isinstance(value, dict):
        return {k: REDACTED if any(w in _letters(k) for w in words) else redact(v, words, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, words, depth + 1) for v in value]
    return value


def named_only(body: Any, names: Iterable[str] | None) -> Any:
    """``body`` with the values of properties outside ``names`` (the operation's model) replaced: an unknown
    property is logged by its name only, whatever that name is; without a model, every value is replaced."""
    if not isinstance(body, dict):
        return body if body is None else REDACTED
    known = set(names or ())
    return {k: v if k in known else REDACTED for k, v in body.items()}


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates (JSON's ``\\ud800``) escaped so the line can be
    written as UTF-8."""
    text = text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit} chars)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def init_request_logging(app: Flask) -> None:
    """One access line for every request, and a detail line for operations marked @log_record."""

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("started")
        ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        signed_in = auth.signed_in_user_id()
        user_id = "-" if signed_in is None else signed_in
        access_log.info("%s %s %s %.1fms user=%s ip=%s", request.method, request.path, response.status_code, ms,
                        user_id, request.remote_addr)
        if g.get("log_record"):
            settings = configs.log
            body = named_only(request.get_json(silent=True) if request.is_json else None, g.get("body_fields"))
            query = redact(request.args.to_dict(flat=True), settings.redact)
            size = response.calculate_content_length() if not response.is_streamed else None
            record_log.info(
                "%s %s query=%s body=%s -> %s size=%s %.1fms user=%s", request.method, request.path,
                _clip(json.dumps(query, ensure_ascii=False), settings.body_limit),
                _clip(json.dumps(redact(body, settings.redact), ensure_ascii=False), settings.body_limit),
                response.status_code, size, ms, user_id,
            )
        return response
