"""Where a request's time goes below the app: system calls and context switches per request of tornado_server.py.

Runs one process with production settings (PostgreSQL + Redis, as make bench), for each ``server.http`` in turn,
and sends it --requests keep-alive ``GET /api/health/live`` requests from one client, one at a time. Context
switches (voluntary and not, of all the process's threads, from /proc) are counted without a tracer; then the same
requests again under ``strace -c -f`` (``apt install strace``) count the system calls by name. Writes
bench/results/syscalls-<UTC time>.md (or --results).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import PROJECT_DIR, bench_env, command, database, free_port, server

MODES = ("tornado", "httptools")
SHOWN = 8  # system calls named in the table, the most frequent first


def switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        total += sum(int(n) for n in re.findall(r"(?:nonvoluntary|voluntary)_ctxt_switches:\s+(\d+)", status))
    return total


def all_traced(pid: int) -> bool:
    """Whether a tracer is attached to every thread of ``pid``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            tracer = re.search(r"TracerPid:\s+(\d+)", (task / "status").read_text())
        except FileNotFoundError:
            continue
        if tracer is None or tracer[1] == "0":
            return False
    return True


def send(connection: http.client.HTTPConnection, requests: int) -> None:
    for _ in range(requests):
        connection.request("GET", "/api/health/live")
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"health/live answered {answer.status}")


def traced(pid: int, connection: http.client.HTTPConnection, requests: int, out: Path) -> dict[str, int]:
    """System calls by name over ``requests`` requests, from strace -c -f attached to ``pid``."""
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not all_traced(pid):
        if time.monotonic() > deadline or tracer.poll() is not None:
            raise SystemExit("strace did not attach (ptrace allowed here?)")
        time.sleep(0.05)
    send(connection, requests)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    calls = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def measure(mode: str, env: dict[str, str], python: str, work: Path, requests: int) -> tuple[float, dict[str, int]]:
    port = free_port()
    with server(command("tornado", python, port, 1), {**env, "APP_SERVER__HTTP": mode}, port,
                work / f"{mode}.log") as pid:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        send(connection, 200)  # warm: imports, catalogues, pools
        before = switches(pid)
        send(connection, requests)
        per_request = (switches(pid) - before) / requests
        calls = traced(pid, connection, requests, work / f"strace-{mode}.txt")
    return per_request, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--results", type=Path, default=PROJECT_DIR / "bench" / "results")
    args = parser.parse_args()
    if not shutil.which("strace"):
        raise SystemExit("strace is not installed (apt install strace)")

    python = str(Path(sys.executable).parent / "python")
    work = Path(tempfile.mkdtemp(prefix="bench-syscalls-"))
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    results: dict[str, tuple[float, dict[str, int]]] = {}
    try:
        with database(os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")) as db_url:
            env = bench_env(db_url, redis_url, f"bench_{os.getpid()}:", work)
            subprocess.run([python, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True,
                           capture_output=True)
            for mode in MODES:
                results[mode] = measure(mode, env, python, work, args.requests)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    names = sorted({name for _, calls in results.values() for name in calls},
                   key=lambda name: -sum(calls.get(name, 0) for _, calls in results.values()))[:SHOWN]
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    lines = [f"# System calls per request {when}", "",
             f"`GET /api/health/live`, {args.requests:,} keep-alive requests one at a time, one process "
             "(production settings); context switches from /proc without a tracer, system calls from `strace -c -f`.",
             "", "| per request | " + " | ".join(f"`http = {mode}`" for mode in MODES) + " |",
             "|---|" + "---:|" * len(MODES),
             "| context switches | " + " | ".join(f"{results[m][0]:.1f}" for m in MODES) + " |",
             "| system calls | " + " | ".join(f"{sum(results[m][1].values()) / args.requests:.1f}" for m in MODES)
             + " |"]
    for name in names:
        lines.append(f"| `{name}` | " + " | ".join(f"{results[m][1].get(name, 0) / args.requests:.1f}"
                                                   for m in MODES) + " |")
    report = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"syscalls-{when}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
