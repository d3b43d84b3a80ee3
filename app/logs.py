"""Logging: loads logging.ini, stamps every record with the request id, mails ERRORs when enabled,
writes one access line per request and @log_record's detail lines with secrets redacted."""

from __future__ import annotations

import copy
import json
import logging
import logging.config
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from logging.handlers import SMTPHandler
from typing import Any

from flask import Flask, Response, g, request

from app import auth
from app.config import Settings, configs, project_path
from app.request_id import current_request_id

access_log = logging.getLogger("app.access")
record_log = logging.getLogger("app.record")
REDACTED = "[redacted]"


class RequestFormatter(logging.Formatter):
    """A formatter whose records carry ``request_id`` ("-" outside a request)."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return super().format(record)


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
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


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


class BackgroundHandler(logging.Handler):
    """Runs the console and file handlers on one background thread that writes in batches, every
    ``interval`` seconds: a request thread only appends its record to a list, and never waits on a handler's
    lock, a disk write, or a wake-up of the writer (measured: per-record hand-offs cost a busy server more
    than the writing itself). The request id is stamped here, in the thread that logs. ``flush()`` returns
    once everything logged so far is written; ``close()`` (logging.shutdown() at exit) writes the rest.
    """

    interval = 0.05

    def __init__(self, handlers: list[logging.Handler]) -> None:
        super().__init__()
        self.handlers = handlers
        self.pending: deque[logging.LogRecord] = deque()  # append and popleft are atomic: no lock on the way in
        self.writing = threading.Lock()
        self.stopping = threading.Event()
        self.writer = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self.writer.start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)  # the other handlers (pytest's caplog, …) keep the original
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.message = record.getMessage()
        record.msg, record.args, record.exc_info = record.message, None, None
        return record

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.prepare(record))
        except Exception:
            self.handleError(record)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self._write_pending()

    def _write_pending(self) -> None:
        with self.writing:
            while self.pending:
                record = self.pending.popleft()
                for handler in self.handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)

    def flush(self) -> None:
        """Return once every record logged so far is written."""
        self._write_pending()
        for handler in self.handlers:
            handler.flush()

    def close(self) -> None:
        """Write what is pending, then stop (logging.shutdown() calls this at exit)."""
        self.stopping.set()
        if self.writer.is_alive() and self.writer is not threading.current_thread():
            self.writer.join()
        self._write_pending()
        for handler in self.handlers:
            handler.close()
        super().close()


def configure_logging(settings: Settings) -> None:
    """Load ``log.ini`` with the file handler writing to ``log.file`` (its directory made), its handlers run by
    one background thread."""
    ini = project_path(settings.log.ini)
    logfile = project_path(settings.log.file)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BackgroundHandler):
            old.close()
    logging.config.fileConfig(ini, defaults={"logfile": str(logfile)}, disable_existing_loggers=False)
    root.setLevel(settings.log.level.upper())
    if settings.log.format == "json":
        for handler in root.handlers:
            if not isinstance(handler, AdminMailHandler):
                handler.setFormatter(JsonFormatter())
    # The console and file handlers move to the background; ERROR mails stay in the thread that logs, where the
    # app's settings (mail.admins, …) are at hand, and they are rare.
    handlers = [h for h in root.handlers if not isinstance(h, AdminMailHandler)]
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(BackgroundHandler(handlers))


def redact(value: Any, secret_keys: Iterable[str], depth: int = 0) -> Any:
    """``value`` with the value of every key named in ``secret_keys`` (any case, any depth) replaced."""
    keys = {k.lower() for k in secret_keys}
    if depth > 20:
        return "…"
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in keys else redact(v, keys, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, keys, depth + 1) for v in value]
    return value


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
            body = request.get_json(silent=True) if request.is_json else None
            query = redact(request.args.to_dict(flat=True), settings.redact)
            size = response.calculate_content_length() if not response.is_streamed else None
            record_log.info(
                "%s %s query=%s body=%s -> %s size=%s %.1fms user=%s", request.method, request.path,
                _clip(json.dumps(query, ensure_ascii=False), settings.body_limit),
                _clip(json.dumps(redact(body, settings.redact), ensure_ascii=False), settings.body_limit),
                response.status_code, size, ms, user_id,
            )
        return response
