"""bench/sessions.py, bench/transfers.py and bench/syscalls.py at a tiny size, so that they cannot rot: each runs
and writes its table (the full-size figures are in docs/performance.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support import PROJECT_DIR, service_missing

pytestmark = pytest.mark.e2e
SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    return subprocess.run([sys.executable, f"bench/{script}", *args], cwd=PROJECT_DIR, env=env, capture_output=True,
                          text=True, timeout=120)


def test_bench_sessions_py_counts_every_key_of_a_session(tmp_path: Path) -> None:
    result = run_bench("sessions.py", "--sessions", "300", "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [report] = tmp_path.glob("sessions-*.md")
    text = report.read_text()
    assert "(900 keys)" in text  # a session, an index and a profile each
    for kind, keys in (("session", 300), ("index", 300), ("profile", 300)):
        assert f"| `auth:{kind}:…` | {keys} | " in text
    per_session = int(re.search(r"used_memory after minus before, per session \| (\d+) B", text)[1])  # type: ignore
    assert 300 < per_session < 10_000


def test_bench_transfers_py_checks_every_download(tmp_path: Path) -> None:
    try:
        psycopg.connect(SERVER.replace("+psycopg", ""), connect_timeout=2).close()
    except psycopg.Error as exc:
        service_missing("PostgreSQL for bench/transfers.py", exc)
    result = run_bench("transfers.py", "--clients", "3", "--size-mib", "2", "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [report] = tmp_path.glob("transfers-*.md")
    text = report.read_text()
    assert "| 3 uploads | " in text and "| 3 downloads (SHA-256 checked) | " in text
    assert re.search(r"\| peak RSS growth, both phases \| [\d.]+ MB \| < 64 MB \(met\) \|", text), text


def test_bench_syscalls_py_counts_both_http_paths(tmp_path: Path) -> None:
    try:
        psycopg.connect(SERVER.replace("+psycopg", ""), connect_timeout=2).close()
    except psycopg.Error as exc:
        service_missing("PostgreSQL for bench/syscalls.py", exc)
    result = run_bench("syscalls.py", "--requests", "100", "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [report] = tmp_path.glob("syscalls-*.md")
    rows = dict(re.findall(r"^\| (context switches|system calls) \| ([\d.]+) \| [\d.]+ \|$", report.read_text(), re.M))
    assert float(rows["context switches"]) > 0 and float(rows["system calls"]) > 0
