"""bench/scale.py at a tiny size, so that it cannot rot: it runs, walks to the last cursor page, and its plans name
the indexes (at 2,000 rows the planner may still prefer a table scan for q; the 1,000,000-row run is in
docs/performance.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support import PROJECT_DIR, service_missing

SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.e2e
def test_bench_scale_py_runs_at_2000_users(tmp_path: Path) -> None:
    try:
        psycopg.connect(SERVER.replace("+psycopg", ""), connect_timeout=2).close()
    except psycopg.Error as exc:
        service_missing("PostgreSQL for bench/scale.py", exc)
    env = {key: value for key, value in os.environ.items() if not key.startswith("APP_")}
    result = subprocess.run([sys.executable, "bench/scale.py", "--users", "2000", "--repeat", "2", "--results",
                             str(tmp_path)], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [report] = tmp_path.glob("scale-*.md")
    text = report.read_text()
    assert "2,000 users on PostgreSQL" in text
    assert "| cursor form, last page | " in text and "| page form, page 100 (last) | " in text
    assert "Index Scan Backward using pk_users" in text
    assert "Bitmap Index Scan on ix_users_nickname_trgm" in text  # q that matches nothing: the index answers it
    assert "last page / first page" in text
