"""Development server that restarts itself: `python hot_deploy.py [--watch DIR] [tornado_server.py options]`.

Runs tornado_server.py as a child, passing every option it does not know itself (--port, --address, --app, …),
and restarts it once per burst of saved changes (quiet for 0.3 s) to a .py file (config_default.py and
config_override.py included) or logging.ini anywhere under the watched directory, the project by default.
Virtual environments, caches, instance/, .git and editor temp files are ignored, and not even watched: only the
watched directory itself and its other subdirectories are (a .venv holds thousands of directories, and watching
them overflows inotify's queue). A child that died, say on a
syntax error, starts again on the next save. Ctrl-C or SIGTERM stops both.

Not yet: if hot_deploy itself is killed with SIGKILL, its server is left running.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

PROJECT_DIR = Path(__file__).resolve().parent
IGNORED_DIRS = {".venv", "venv", "__pycache__", "instance", ".git", ".mypy_cache", ".ruff_cache",
                ".pytest_cache", ".hypothesis", ".schemathesis", "htmlcov", "dist", "node_modules"}
WATCHED = ("*.py", "logging.ini")
TEMPORARY = ("*.swp", "*.swx", "*~", ".#*", "#*#", "*.tmp", "4913")  # 4913: vim's write test
CHANGES = [FileModifiedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent, DirCreatedEvent]  # not opens
QUIET_PERIOD = 0.3  # seconds without changes before restarting
STOP_TIMEOUT = 25  # seconds to wait for a graceful stop (server.shutdown_timeout is 10 s by default)


def is_watched(path: str, root: Path) -> bool:
    """Whether a change to ``path`` should restart the server."""
    try:
        parts = Path(path).resolve().relative_to(root).parts
    except ValueError:
        return False
    if not parts or any(part in IGNORED_DIRS for part in parts[:-1]):
        return False
    name = parts[-1]
    return any(fnmatch(name, p) for p in WATCHED) and not any(fnmatch(name, p) for p in TEMPORARY)


class Reloader(FileSystemEventHandler):
    """Keeps one server child running; restarts it after a quiet period following changes."""

    def __init__(self, command: list[str], root: Path) -> None:
        self.command = command
        self.root = root
        self.child: subprocess.Popen | None = None
        self.exit_reported = False
        self.changed: set[str] = set()
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        self.closed = False
        self.on_new_directory: Callable[[Path], None] | None = None

    def start(self) -> None:
        self.child = subprocess.Popen(self.command, cwd=PROJECT_DIR)
        self.exit_reported = False
        print(f"hot_deploy: started server pid {self.child.pid}", flush=True)

    def stop_child(self) -> None:
        if self.child and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()

    def report_exit(self) -> None:
        """Say once that the server exited by itself (it starts again on the next save)."""
        with self.lock:
            if self.child and not self.exit_reported and self.child.poll() is not None and not self.closed:
                self.exit_reported = True
                print(f"hot_deploy: server exited with {self.child.returncode}; waiting for a change", flush=True)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type == "created" and self.on_new_directory:
                self.on_new_directory(Path(str(event.src_path)))
            return
        paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
        relevant = [p for p in paths if p and is_watched(p, self.root)]
        if not relevant:
            return
        with self.lock:
            if self.closed:
                return
            self.changed.update(relevant)
            if self.timer:
                self.timer.cancel()
            self.timer = threading.Timer(QUIET_PERIOD, self.restart)
            self.timer.daemon = True
            self.timer.start()

    def restart(self) -> None:
        with self.lock:
            if self.closed:  # a timer that fired while we were stopping
                return
            changed, self.changed = sorted(self.changed), set()
            names = ", ".join(str(Path(p).resolve().relative_to(self.root)) for p in changed)
            print(f"hot_deploy: changed {names}; restarting", flush=True)
            self.stop_child()
            self.start()

    def close(self) -> None:
        """Stop restarting and stop the server."""
        with self.lock:
            self.closed = True
            if self.timer:
                self.timer.cancel()
            self.stop_child()


def watch_tree(observer: Any, handler: Reloader, root: Path) -> None:
    """Watch ``root`` itself and, recursively, each subdirectory of it that is not ignored, also those made later;
    only changes, not opens and reads."""

    def watch(directory: Path) -> None:
        if directory.parent == root and directory.name not in IGNORED_DIRS and not directory.is_symlink():
            observer.schedule(handler, str(directory), recursive=True, event_filter=CHANGES)

    observer.schedule(handler, str(root), event_filter=CHANGES)
    for child in sorted(root.iterdir()):
        if child.is_dir():
            watch(child)
    handler.on_new_directory = watch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", default=str(PROJECT_DIR), help="directory to watch (default: the project)")
    args, server_args = parser.parse_known_args(argv)
    root = Path(args.watch).resolve()

    stopped = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    reloader = Reloader([sys.executable, str(PROJECT_DIR / "tornado_server.py"), *server_args], root)
    observer = Observer()
    watch_tree(observer, reloader, root)
    observer.start()
    reloader.start()
    print(f"hot_deploy: watching {root} for changes to *.py and logging.ini", flush=True)
    while not stopped.wait(0.5):
        reloader.report_exit()
    print("hot_deploy: stopping", flush=True)
    observer.stop()
    reloader.close()
    observer.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
