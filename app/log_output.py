"""Where log lines go: logging.ini's handlers, run by one background thread, and one process per log file.

A rotating file written by several processes loses lines: after one rotates it, the others write on into the
renamed file, and rotate it again. So each file has one writer, the process that opened it:

- ``log.file = ""``: no file, the console only. supervisord.ini sets it for every program: supervisor captures
  each process's console into a file of its own and rotates it itself.
- A forked child (a Celery pool process, a ``tornado_server.py --processes N`` child) drops the file handlers it
  inherits and writes to the console it shares with its parent.
- A ``tornado_server.py`` child then opens a file of its own: child ``k`` writes ``app-<k>.log`` beside
  ``log.file``, the same file after a restart (``log_as_child``). The parent keeps ``log.file`` for its few lines.
"""

from __future__ import annotations

import configparser
import contextlib
import copy
import logging
import logging.config
import logging.handlers
import os
import threading
import weakref
from collections import deque
from pathlib import Path

from app.config import Settings, project_path
from app.logs import AdminMailHandler, JsonFormatter, bounded_message
from app.request_id import current_request_id

_child_index: int | None = None  # set in a tornado_server.py child: its file is app-<index>.log


def log_as_child(index: int) -> None:
    """In a forked server child, before its app is made: log to ``log.file`` with ``-<index>`` before the suffix."""
    global _child_index
    _child_index = index


def log_file(settings: Settings) -> Path | None:
    """The file this process writes (``app-<index>.log`` in a server child), or None for the console only."""
    if not settings.log.file:
        return None
    path = project_path(settings.log.file)
    return path if _child_index is None else path.with_name(f"{path.stem}-{_child_index}{path.suffix}")


def _read_ini(ini: Path, logfile: Path | None) -> configparser.ConfigParser:
    """``ini`` with ``%(logfile)s`` filled in; without a file, the handlers that write to it are left out."""
    parser = configparser.ConfigParser({"logfile": str(logfile or "")})
    if not parser.read(ini, encoding="utf-8"):
        raise FileNotFoundError(f"log.ini: no file {ini}")
    if logfile is None:
        unused = {section.removeprefix("handler_") for section in parser.sections()
                  if section.startswith("handler_") and "%(logfile)s" in parser.get(section, "args", raw=True,
                                                                                       fallback="")}
        for section in ("handlers", *(s for s in parser.sections() if s.startswith("logger_"))):
            option = "keys" if section == "handlers" else "handlers"
            if parser.has_option(section, option):
                names = parser.get(section, option, raw=True).split(",")
                parser.set(section, option, ",".join(n for n in names if n.strip() not in unused))
    return parser


def _at_fork(handler: weakref.ref[BackgroundHandler], step: str) -> None:
    target = handler()
    if target is not None:
        getattr(target, step)()


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
        self._start_writer()
        handler = weakref.ref(self)
        # No fork while a batch is half written: a child would write the rest of the parent's buffer again.
        os.register_at_fork(before=lambda: _at_fork(handler, "_before_fork"),
                            after_in_parent=lambda: _at_fork(handler, "_after_fork_in_parent"),
                            after_in_child=lambda: _at_fork(handler, "_after_fork_in_child"))

    def _start_writer(self) -> None:
        self.writer = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self.writer.start()

    def _before_fork(self) -> None:
        self.writing.acquire()

    def _after_fork_in_parent(self) -> None:
        self.writing.release()

    def _after_fork_in_child(self) -> None:
        """A forked child (a Celery pool process, a server child) has no threads: start the writer again, without
        the parent's files (the parent writes and rotates them)."""
        self.writing = threading.Lock()  # locks and events made anew: the child has none of the parent's threads
        closed, self.stopping = self.stopping.is_set(), threading.Event()
        self.pending.clear()  # the parent's records, which the parent writes
        for inherited in [h for h in self.handlers if isinstance(h, logging.FileHandler)]:
            self.handlers.remove(inherited)
            inherited.close()  # the child's copy of the descriptor; its buffer is empty (see __init__)
        if closed:
            self.stopping.set()
        else:
            self._start_writer()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)  # the other handlers (pytest's caplog, …) keep the original
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.message = bounded_message(record)  # the formatters escape it
        record.msg, record.args, record.exc_info = record.message, None, None
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        """Handler.handle without its lock: emit touches only its own copy of the record and the deque. Under that
        lock every request thread queued behind the one making a request id (a system call, the GIL let go):
        half the samples of a loaded server were threads waiting there."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

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
            batch = []
            while self.pending:
                batch.append(self.pending.popleft())
            for handler in self.handlers:
                write_batch(handler, [record for record in batch if record.levelno >= handler.level])

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


BATCHED = (logging.StreamHandler, logging.FileHandler, logging.handlers.RotatingFileHandler)


def write_batch(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
    """``records`` through ``handler``: the console and (size-rotating) files get them in one write and one flush
    where the standard handlers write, flush and (rotating) stat the file twice per record, each a moment without
    the GIL that request threads then queue to take back; any other handler gets them one by one."""
    if not records:
        return
    stream = getattr(handler, "stream", None)
    if type(handler) not in BATCHED or stream is None:  # another kind, or a file opened on its first record
        for record in records:
            handler.handle(record)
        return
    assert isinstance(handler, logging.StreamHandler)
    lines = []
    for record in records:
        try:
            if handler.filter(record):
                lines.append(handler.format(record) + handler.terminator)
        except Exception:  # one record that cannot be formatted costs its own line, as in emit()
            handler.handleError(record)
    if not lines:
        return
    try:
        with handler.lock or contextlib.nullcontext():
            if isinstance(handler, logging.handlers.RotatingFileHandler) and handler.maxBytes > 0:
                _write_rotating(handler, lines)
            else:
                stream.write("".join(lines))
            handler.flush()
    except Exception:
        handler.handleError(records[0])


def _write_rotating(handler: logging.handlers.RotatingFileHandler, lines: list[str]) -> None:
    """``lines`` in as few writes as ``maxBytes`` allows, rotating before the line that would fill a non-empty file,
    as shouldRollover does: also when the file was deleted (a fresh one starts), never when the path is something
    other than a regular file (/dev/null)."""
    path = handler.baseFilename
    rotates = not (os.path.exists(path) and not os.path.isfile(path))
    assert handler.stream is not None
    size, start = handler.stream.seek(0, os.SEEK_END), 0
    for index, line in enumerate(lines):
        if rotates and size and size + len(line) >= handler.maxBytes:
            handler.stream.write("".join(lines[start:index]))
            handler.doRollover()
            if handler.stream is None:  # a file that opens lazily (delay=True) stays closed after it
                handler.stream = handler._open()
            size, start = 0, index
        size += len(line)
    handler.stream.write("".join(lines[start:]))


def configure_logging(settings: Settings) -> None:
    """Load ``log.ini`` with its file handler writing to ``log_file(settings)`` (its directory made) or left out,
    its handlers run by one background thread."""
    logfile = log_file(settings)
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BackgroundHandler):
            old.close()
    logging.config.fileConfig(_read_ini(project_path(settings.log.ini), logfile), disable_existing_loggers=False)
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
