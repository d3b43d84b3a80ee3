"""Transfer memory benchmark: the server's resident memory while --clients clients (default 12) upload, then
download, a --size-mib MiB file (default 16) each, at once.

Starts ``tornado_server.py`` (one process, production settings, PostgreSQL + Redis as bench/run.py, the local
files backend in a temporary directory), samples its VmRSS every 5 ms, and reports the growth over its RSS after a
warm-up, for the uploads, the downloads and both, to bench/results/transfers-<UTC time>.md (or --results). Every
download is checked against the upload's SHA-256. Target: growth under 64 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import PASSWORD, PHONE, PROJECT_DIR, bench_env, command, database, free_port, login_token, server

MiB = 1024 * 1024
TARGET = 64 * 1000 * 1000


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read())[1]) * 1024  # type: ignore[index]


def peak_rss_during(pid: int, work: Callable[[], Any]) -> tuple[int, Any]:
    """The highest RSS of ``pid`` while ``work`` runs, and what it returned."""
    peak, done = rss(pid), threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return max(peak, rss(pid)), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--results", type=Path, default=PROJECT_DIR / "bench" / "results")
    args = parser.parse_args()

    import redis
    import requests

    python = str(Path(sys.executable).parent / "python")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"bench_{os.getpid()}:"
    work = Path(tempfile.mkdtemp(prefix="bench-transfers-"))
    size = args.size_mib * MiB
    data = b"%PDF-1.7\n" + os.urandom(size - 9)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with database(os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")) as db_url:
            env = bench_env(db_url, redis_url, prefix, work)
            env.update({"APP_FILES__LOCAL_DIR": str(work / "uploads"), "APP_FILES__MAX_SIZE": str(max(size, 16 * MiB))})
            subprocess.run([python, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True,
                           capture_output=True)
            subprocess.run([python, "manage.py", "create-admin", "--phone", PHONE, "--nickname", "bench",
                            "--password", PASSWORD], cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
            port = free_port()
            with server(command("tornado", python, port, 1), env, port, work / "tornado.log") as pid:
                base, headers = f"http://127.0.0.1:{port}/api/files/", {"token": login_token(port)}
                warm = requests.post(base, files={"file": ("warm.pdf", data[:MiB])}, headers=headers, timeout=30)
                assert warm.status_code == 201, warm.text
                warm_id = warm.json()["data"]["id"]
                requests.get(f"{base}{warm_id}/content", headers=headers, timeout=30).raise_for_status()
                before = rss(pid)

                def upload(n: int) -> int:
                    answer = requests.post(base, files={"file": (f"{n}.pdf", data)}, headers=headers, timeout=120)
                    assert answer.status_code == 201, answer.text
                    assert answer.json()["data"]["sha256"] == digest
                    return int(answer.json()["data"]["id"])

                def download(file_id: int) -> None:
                    with requests.get(f"{base}{file_id}/content", headers=headers, timeout=120, stream=True) as answer:
                        answer.raise_for_status()
                        check = hashlib.sha256()
                        for chunk in answer.iter_content(256 * 1024):
                            check.update(chunk)
                    assert check.hexdigest() == digest, "a download differs from its upload"

                with ThreadPoolExecutor(args.clients) as clients:
                    started = time.perf_counter()
                    up_peak, ids = peak_rss_during(pid, lambda: list(clients.map(upload, range(args.clients))))
                    up_seconds = time.perf_counter() - started
                    started = time.perf_counter()
                    down_peak, _ = peak_rss_during(pid, lambda: list(clients.map(download, ids)))
                    down_seconds = time.perf_counter() - started
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        shutil.rmtree(work, ignore_errors=True)

    growth = max(up_peak, down_peak) - before
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    verdict = "met" if growth < TARGET else "missed"
    report = "\n".join([
        f"# Transfer memory {when}", "",
        f"`tornado_server.py`, one process, production settings, local files backend; {args.clients} clients at once, "
        f"a {args.size_mib} MiB file each; RSS after a warm-up {before / MiB:.1f} MiB.", "",
        "| phase | seconds | peak RSS growth |", "|---|---:|---:|",
        f"| {args.clients} uploads | {up_seconds:.2f} | {(up_peak - before) / MiB:.1f} MiB |",
        f"| {args.clients} downloads (SHA-256 checked) | {down_seconds:.2f} | {(down_peak - before) / MiB:.1f} MiB |",
        "", "| measure | value | target |", "|---|---:|---|",
        f"| peak RSS growth, both phases | {growth / 1e6:.1f} MB | < 64 MB ({verdict}) |"]) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"transfers-{when}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
