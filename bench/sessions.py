"""Session memory benchmark: Redis bytes per open session at --sessions sessions (default 100,000).

Starts a redis-server of its own on a free loopback port (nothing else writes to it), opens the sessions through
the app's own ``app.services.sessions.open_session`` (one user each, a typical browser User-Agent) and stores each
user's cached profile (``app.services.user_cache.store``), as a login does. Reports ``used_memory`` after minus
before, divided by the sessions, and ``MEMORY USAGE`` of each kind of key on a sample, to
bench/results/sessions-<UTC time>.md (or --results). Target: at most 1 KB (1,024 bytes) per session.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
              "Safari/537.36")
TARGET = 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


def kind_of(key: bytes, prefix: bytes) -> str:
    parts = key[len(prefix):].split(b":")
    return ":".join(part.decode() for part in parts[:2])  # auth:access, auth:session, auth:profile, …


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--results", type=Path, default=PROJECT_DIR / "bench" / "results")
    args = parser.parse_args()

    import redis

    from app import create_app
    from app.models.user import User
    from app.services import user_cache
    from app.services.sessions import open_session

    work = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    process, port = start_redis(work)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        app = create_app({"app": {"env": "testing", "secret_key": "bench-" + "s" * 40},
                          "database": {"url": f"sqlite:///{work / 'app.db'}"}, "redis": {"url": url},
                          "auth": {"profile_cache_ttl": 3600},  # none may expire during the run
                          "log": {"file": str(work / "app.log")}})
        client = redis.Redis.from_url(url)
        before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        with app.app_context():
            now = datetime.now(UTC)
            for n in range(1, args.sessions + 1):
                user = User(id=n, phone=f"+86138{n:08d}", email=f"user{n}@example.com", nickname=f"User {n}",
                            role="user", is_active=True, created_at=now, last_login_at=now)
                open_session(n, f"203.0.{n // 256 % 256}.{n % 256}", USER_AGENT)
                user_cache.store(user_cache.Profile.of(user))
        seconds = time.perf_counter() - started
        after = int(client.info("memory")["used_memory"])
        keys = client.dbsize()
        prefix = app.config["REDIS_PREFIX"].encode() if "REDIS_PREFIX" in app.config else b"app:"
        sizes: dict[str, list[int]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        for key in client.scan_iter(count=1000):
            kind = kind_of(key, prefix)
            counts[kind] += 1
            if len(sizes[kind]) < 2000:
                sizes[kind].append(int(client.memory_usage(key, samples=0) or 0))
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    per_session = (after - before) / args.sessions
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    lines = [f"# Session memory {when}", "",
             f"{args.sessions:,} sessions (one user each) opened with `open_session` and the user's cached profile "
             f"stored, in {seconds:.0f} s, on a redis-server of their own ({keys:,} keys).", "",
             "| key | keys | bytes per key (MEMORY USAGE, mean of a sample) |", "|---|---:|---:|"]
    for kind in sorted(sizes):
        lines.append(f"| `{kind}:…` | {counts[kind]:,} | {sum(sizes[kind]) / len(sizes[kind]):.0f} |")
    verdict = "met" if per_session <= TARGET else "missed"
    lines += ["", "| measure | value | target |", "|---|---:|---|",
              f"| used_memory after minus before, per session | {per_session:.0f} B | ≤ {TARGET} B ({verdict}) |"]
    report = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"sessions-{when}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
