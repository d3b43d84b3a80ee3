"""The background log writer's batches: one write per batch to the console and to files, rotation by batch,
filters and levels kept, other handlers fed record by record; and a request id made without a system call."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import subprocess
import sys
from pathlib import Path

from app.log_output import BackgroundHandler
from tests.support import PROJECT_DIR


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logged(handlers: list[logging.Handler], messages: list[str], level: int = logging.INFO) -> None:
    background = BackgroundHandler(handlers)
    try:
        for message in messages:
            background.handle(logging.LogRecord("probe", level, __file__, 1, message, None, None))
        background.flush()
    finally:
        background.close()


def test_a_batch_reaches_the_console_in_one_write_with_filters_and_levels_kept() -> None:
    stream = CountingStream()
    console = logging.StreamHandler(stream)
    console.addFilter(lambda record: "skip" not in record.getMessage())
    quiet = logging.StreamHandler(CountingStream())
    quiet.setLevel(logging.ERROR)
    logged([console, quiet], [f"line {n}" for n in range(200)] + ["skip me"])
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(200)]
    assert stream.writes == 1
    assert quiet.stream.getvalue() == ""


def test_a_rotating_file_rotates_between_batches_and_loses_no_line(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    rotating = logging.handlers.RotatingFileHandler(path, maxBytes=4000, backupCount=50, encoding="utf-8")
    for batch in range(10):
        logged([rotating], [f"batch {batch} line {n:03} " + "x" * 60 for n in range(20)])  # ~1.5 KB a batch
    rotating.close()
    files = sorted(tmp_path.glob("app.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert lines == [f"batch {b} line {n:03} " + "x" * 60 for b in range(10) for n in range(20)]
    assert len(files) > 3
    assert all(f.stat().st_size < 4000 for f in files)


def test_a_batch_larger_than_max_bytes_is_spread_over_files_and_a_deleted_file_comes_back(tmp_path: Path) -> None:
    """As the standard handler: rotation before the line that would fill the file, within one batch too; a file
    deleted under the server is rotated away at the next limit and a new one starts (found by an outside review)."""
    path = tmp_path / "app.log"
    rotating = logging.handlers.RotatingFileHandler(path, maxBytes=1000, backupCount=50, encoding="utf-8")
    logged([rotating], [f"first {n:03} " + "x" * 80 for n in range(5)])
    path.unlink()
    logged([rotating], [f"second {n:03} " + "x" * 80 for n in range(60)])  # ~5.5 KB in one batch
    rotating.close()
    assert path.exists()
    assert all(f.stat().st_size < 1000 for f in tmp_path.glob("app.log*"))
    kept = sorted(line for f in tmp_path.glob("app.log*") for line in f.read_text().splitlines())
    assert kept[-1] == "second 059 " + "x" * 80 and len(kept) >= 50


def test_another_kind_of_handler_gets_each_record() -> None:
    seen: list[str] = []

    class Collecting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logged([Collecting()], ["one", "two", "three"])
    assert seen == ["one", "two", "three"]


def test_request_ids_are_random_uuids_and_differ_in_forked_children() -> None:
    """Made from ``random``, which Python reseeds in a forked child: a child's ids are not its parent's."""
    script = (
        "import os\nfrom app.request_id import accept_or_make\n"
        "accept_or_make('')\nread, write = os.pipe()\n"
        "if os.fork() == 0:\n    os.write(write, accept_or_make('').encode()); os._exit(0)\n"
        "os.wait(); print(accept_or_make(''), os.read(read, 64).decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)}).stdout.split()
    assert len(out) == 2 and out[0] != out[1]
    assert all(re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", made) for made in out)


def test_a_record_that_cannot_be_formatted_costs_only_its_own_line() -> None:
    stream = CountingStream()
    console = logging.StreamHandler(stream)
    background = BackgroundHandler([console])
    try:
        background.handle(logging.LogRecord("probe", logging.INFO, __file__, 1, "before", None, None))
        broken = logging.LogRecord("probe", logging.INFO, __file__, 1, "x", None, None)
        background.pending.append(broken)  # as if prepare() had let through a message that breaks %-formatting
        broken.msg, broken.args = "%d", ("not a number",)
        background.handle(logging.LogRecord("probe", logging.INFO, __file__, 1, "after", None, None))
        logging.raiseExceptions, raised = False, logging.raiseExceptions
        try:
            background.flush()
        finally:
            logging.raiseExceptions = raised
    finally:
        background.close()
    assert stream.getvalue().splitlines() == ["before", "after"]
