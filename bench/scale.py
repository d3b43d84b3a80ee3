"""Scale benchmark: the admin user list at a million users on PostgreSQL, by the app's own service function.

Makes a database of its own (bench_scale_<pid> on BENCH_DATABASE_URL's server, default
postgresql://postgres@127.0.0.1:5432/test; dropped at the end), migrates it, seeds --users users in one SQL
statement (generate_series), builds the migration's trigram indexes on the full table (timed), ANALYZEs, then
times ``app.services.users.list_users``:

    the cursor form's first and last page; the page form's first and last page (COUNT + OFFSET);
    q searches (a nickname, phone and email fragment of one user, one that matches nothing, one that matches all)

Prints and writes a markdown table (p50 and max of --repeat runs, the plan's scan nodes from EXPLAIN of the very
SQL the service sent) to bench/results/scale-<UTC time>.md (or --results).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

SEED = """
INSERT INTO users (phone, email, nickname, password_hash, role, is_active, created_at, updated_at)
SELECT '+8613' || lpad(((g::bigint * 7919) %% 1000000000)::text, 9, '0'),
       substr(md5('e' || g), 1, 10) || '@example.com',
       'User ' || substr(md5('n' || g), 1, 8),
       'not-a-hash', 'user', true, now(), now()
FROM generate_series(1, %(users)s) AS g
"""
SCAN = re.compile(r"((?:Parallel )?(?:Seq Scan|Index Only Scan|Index Scan(?: Backward)?|Bitmap Index Scan)"
                  r"(?: using| on)? ?\w*)")


@contextmanager
def database(server_url: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database: (SQLAlchemy URL, psycopg URL); dropped afterwards."""
    import psycopg

    name = f"bench_scale_{os.getpid()}"
    plain = re.sub(r"^postgresql(\+\w+)?://", "postgresql://", server_url)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    own = plain.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield own.replace("postgresql://", "postgresql+psycopg://", 1), own
    finally:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """p50 and max in ms of ``repeat`` runs after one warm-up, and the last run's result."""
    result, times = run(), []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times), result


def plan_of(statements: list[tuple[str, Any]]) -> str:
    """The scan nodes of EXPLAIN for each statement sent (the page form sends the rows' query and a COUNT)."""
    from app.extensions import db

    plans = []
    with db.engine.connect() as conn:
        for sql, params in statements:
            lines = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params)]
            scans = [m.group(1).strip() for line in lines for m in [SCAN.search(line)] if m]
            plans.append(("count: " if "count(" in sql.lower() else "") + ", ".join(dict.fromkeys(scans)))
    return "; ".join(plans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21, help="timed runs per scenario (after one warm-up)")
    parser.add_argument("--per-page", type=int, default=20)
    parser.add_argument("--results", type=Path, default=PROJECT_DIR / "bench" / "results")
    args = parser.parse_args()

    import flask_migrate
    import psycopg
    from sqlalchemy import event

    from app import create_app
    from app.extensions import db
    from app.services.records import Paging
    from app.services.users import list_users

    server = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows: list[tuple[str, float, float, int, str]] = []
    with database(server) as (url, plain):
        app = create_app({"app": {"env": "testing", "secret_key": "bench-" + "s" * 40}, "database": {"url": url},
                          "redis": {"url": "memory://"}, "log": {"file": str(work / "app.log")}})
        with app.app_context():
            flask_migrate.upgrade()
            flask_migrate.downgrade(revision="-1")  # the search indexes go, to be built on the full table below
            db.engine.dispose()
            start = time.perf_counter()
            with psycopg.connect(plain, autocommit=True) as connection:
                connection.execute(SEED, {"users": args.users})
                connection.execute("VACUUM ANALYZE users")
                middle = connection.execute("SELECT phone, email, nickname FROM users WHERE id = %s",
                                            (args.users // 2 + 1,)).fetchone()
            seeded = time.perf_counter() - start
            assert middle, "seeding failed"
            phone, email, nickname = middle
            # the same search before the migration's indexes exist: what they are for
            unindexed = timed(lambda: list_users(Paging(args.per_page, by_cursor=True), nickname[-6:]), 3)[0]
            db.session.rollback()
            start = time.perf_counter()
            flask_migrate.upgrade()
            indexed = time.perf_counter() - start
            with psycopg.connect(plain, autocommit=True) as connection:
                connection.execute("ANALYZE users")
                last_after = connection.execute("SELECT id FROM users ORDER BY id OFFSET %s LIMIT 1",
                                                (args.per_page,)).fetchone()
            assert last_after, "seeding failed"
            per_page, pages = args.per_page, math.ceil(args.users / args.per_page)
            scenarios: list[tuple[str, Paging, str | None]] = [
                ("cursor form, first page", Paging(per_page, by_cursor=True), None),
                ("cursor form, last page", Paging(per_page, by_cursor=True, after=last_after[0]), None),
                ("page form, page 1", Paging(per_page, page=1), None),
                (f"page form, page {pages} (last)", Paging(per_page, page=pages), None),
            ]
            for form, paging in (("cursor", Paging(per_page, by_cursor=True)), ("page", Paging(per_page))):
                scenarios += [
                    (f"{form} form, q = nickname part {nickname[-6:]!r}", paging, nickname[-6:]),
                    (f"{form} form, q = phone part {phone[-7:]!r}", paging, phone[-7:]),
                    (f"{form} form, q = email part {email[2:8]!r}", paging, email[2:8]),
                    (f"{form} form, q matches nothing", paging, "zzzzzz"),
                    (f"{form} form, q matches all ('example')", paging, "example"),
                ]
            sent: list[tuple[str, Any]] = []
            event.listen(db.engine, "before_cursor_execute",
                         lambda _c, _cur, sql, params, *_: sent.append((sql, params)))
            for name, paging, q in scenarios:
                p50, worst, page = timed(lambda p=paging, q=q: list_users(p, q), args.repeat)
                sent.clear()
                list_users(paging, q)
                db.session.rollback()
                rows.append((name, p50, worst, len(page["items"]), plan_of(list(sent))))
                print(f"{name}: p50 {p50:.2f} ms, max {worst:.2f} ms, {len(page['items'])} rows; {rows[-1][4]}",
                      flush=True)
            db.session.remove()
            db.engine.dispose()

    when = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    first, last = rows[0][1], rows[1][1]
    report = (f"# Scale benchmark {when}\n\n{args.users:,} users on PostgreSQL; app.services.users.list_users, "
              f"{args.per_page} per page; p50 and max of {args.repeat} runs. Seeded in {seeded:.1f} s; the "
              f"migration built the trigram indexes in {indexed:.1f} s. Before it, the cursor form's nickname "
              f"search took {unindexed:.2f} ms (p50 of 3).\n\n"
              "| scenario | p50 ms | max ms | rows | plan (EXPLAIN's scans) |\n|---|---:|---:|---:|---|\n"
              + "".join(f"| {n} | {p:.2f} | {w:.2f} | {c} | {plan} |\n" for n, p, w, c, plan in rows)
              + f"\ncursor form, last page / first page: {last / first:.2f} (target ≤ 1.5)\n")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"scale-{when}.md").write_text(report)
    print("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
