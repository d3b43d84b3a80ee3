"""Benchmark: tornado_server.py against gunicorn, uWSGI and granian serving the same app, in one run. `make bench`.

Starts each with the same number of processes (one per core unless --processes) in production settings on a
fresh PostgreSQL database and a real Redis, then loads each with wrk (or a Python load generator when wrk is
missing), in rounds that alternate the servers so that machine noise hits all alike:

    GET  /api/health/live        no I/O
    GET  /api/users/me           one Redis call and one SQL query (a signed-in read)
    POST /api/auth/login         an Argon2 hash per request (slow on purpose)
    GET  /api/health/live        while 4 clients log in in a loop: does hashing stall everything else?

Writes a markdown table (req/s, p50, p99, errors and non-2xx, ratios) to bench/results/<UTC time>.md and prints
it. Servers not installed are left out (bench/requirements.txt has them). Environment: BENCH_DATABASE_URL (a
PostgreSQL server URL; default postgresql://postgres@127.0.0.1:5432/test, on which a database bench_<pid> is made
and dropped) and BENCH_REDIS_URL (default redis://127.0.0.1:6379/15; keys under a bench_<pid>: prefix, deleted
afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import LOAD, Result, wrk
from servers import (
    PASSWORD,
    PHONE,
    PROJECT_DIR,
    bench_env,
    command,
    database,
    free_port,
    installed,
    login_token,
    server,
)

RESULTS = PROJECT_DIR / "bench" / "results"
SERVERS = ("tornado", "gunicorn", "uwsgi", "granian")
LIVE, ME, LOGIN, UNDER_LOGINS = ("GET /api/health/live", "GET /api/users/me", "POST /api/auth/login",
                                 "GET /api/health/live while 4 clients log in")


def measure(ports: dict[str, int], rounds: int, seconds: float, connections: int, scenarios: list[str],
            round_lines: list[str]) -> dict[tuple[str, str], Result]:
    """Every scenario on every server, each round starting with the next server; the median round of each.
    Each round's line is printed and added to ``round_lines``."""
    login_body = json.dumps({"account": PHONE, "password": PASSWORD})
    json_headers = {"Content-Type": "application/json"}
    runs: dict[tuple[str, str], list[Result]] = {}
    names = list(ports)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            base = f"http://127.0.0.1:{ports[name]}"
            runners = {
                LIVE: lambda base=base: LOAD(f"{base}/api/health/live", seconds, connections),
                # a token of a session just opened: the login scenarios open more than auth.max_sessions
                ME: lambda base=base, name=name: LOAD(
                    f"{base}/api/users/me", seconds, connections, headers={"token": login_token(ports[name])}),
                LOGIN: lambda base=base: LOAD(f"{base}/api/auth/login", seconds, 4, "POST", login_body, json_headers),
                UNDER_LOGINS: lambda base=base: under_logins(base, seconds, login_body, json_headers),
            }
            for scenario in scenarios:
                result = runners[scenario]()
                runs.setdefault((scenario, name), []).append(result)
                line = (f"round {round_number + 1} {name:9} {scenario:45} {result.rps:8.0f} req/s  "
                        f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                        f"errors {result.errors}  non-2xx {result.non_2xx}")
                round_lines.append(line)
                print(line, flush=True)
    return {key: sorted(results, key=lambda r: r.rps)[len(results) // 2] for key, results in runs.items()}


def under_logins(base: str, seconds: float, body: str, headers: dict[str, str]) -> Result:
    """/api/health/live from 4 clients while 4 others log in in a loop."""
    background = threading.Thread(target=LOAD, args=(f"{base}/api/auth/login", seconds + 1, 4, "POST", body,
                                                     headers))
    background.start()
    time.sleep(0.5)  # the login clients are hashing before the measured load starts
    try:
        return LOAD(f"{base}/api/health/live", seconds, 4)
    finally:
        background.join()


# ------------------------------------------------------------------------------------------------ main


def table(results: dict[tuple[str, str], Result], names: list[str]) -> str:
    scenarios = list(dict.fromkeys(scenario for scenario, _ in results))
    lines = ["| scenario | server | req/s | p50 ms | p99 ms | errors | non-2xx |", "|---|---|---:|---:|---:|---:|---:|"]
    for scenario in scenarios:
        for name in names:
            r = results[(scenario, name)]
            lines.append(f"| `{scenario}` | {name} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} "
                         f"| {r.non_2xx} |")
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]

    def ratio_of(a: Result, b: Result) -> float:
        return a.rps / b.rps if b.rps else float("nan")  # a scenario that finished nothing (a very short run)

    for scenario in (s for s in (LIVE, ME, LOGIN) if s in scenarios):
        for other in names[1:]:
            ratio = ratio_of(results[(scenario, "tornado")], results[(scenario, other)])
            target = "≥ 1.0" if scenario in (LIVE, ME) else ""
            lines.append(f"| tornado / {other}, `{scenario}` | {ratio:.2f} | {target} |")
    if UNDER_LOGINS in scenarios:
        for name in names:
            p99 = results[(UNDER_LOGINS, name)].p99_ms
            lines.append(f"| {name}: p99 of `/api/health/live` while 4 clients log in | {p99:.1f} ms | ≤ 50 ms |")
    failed = sum(r.errors + r.non_2xx for (_, name), r in results.items() if name == "tornado")
    lines.append(f"| tornado: errors and non-2xx, all scenarios | {failed} | 0 |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="per server (default: cores)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario and round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default=",".join(SERVERS), help="tornado first (default: %(default)s)")
    parser.add_argument("--scenarios", default="all", help="comma-separated: live,me,login,under-logins")
    parser.add_argument("--threads", type=int, default=0, help="tornado_server.py's server.threads (default: its own)")
    parser.add_argument("--http", choices=("tornado", "httptools"), default="",
                        help="tornado_server.py's server.http (default: its own)")
    args = parser.parse_args()
    short = {"live": LIVE, "me": ME, "login": LOGIN, "under-logins": UNDER_LOGINS}
    scenarios = list(short.values()) if args.scenarios == "all" else [short[s] for s in args.scenarios.split(",")]

    import redis

    python = str(Path(sys.executable).parent / "python")
    names = [name for name in args.servers.split(",") if name]
    if names[:1] != ["tornado"]:
        raise SystemExit("--servers must start with tornado: the ratios compare it with the others")
    missing = [name for name in names if not installed(name, python)]
    if missing:
        print(f"not installed, left out: {', '.join(missing)} (pip install -r bench/requirements.txt)", flush=True)
        names = [name for name in names if name not in missing]
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"bench_{os.getpid()}:"
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with database(os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")) as db_url:
        env = bench_env(db_url, redis_url, prefix, work)
        subprocess.run([python, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True,
                       capture_output=True)
        subprocess.run([python, "manage.py", "create-admin", "--phone", PHONE, "--nickname", "bench", "--password",
                        PASSWORD], cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
        if args.threads:
            env["APP_SERVER__THREADS"] = str(args.threads)
        if args.http:
            env["APP_SERVER__HTTP"] = args.http
        ports = {name: free_port() for name in names}
        round_lines: list[str] = []
        print(f"load: {'wrk' if LOAD is wrk else 'python'}, {args.connections} connections, {args.seconds} s x "
              f"{args.rounds} rounds; {args.processes} processes per server: {', '.join(names)}", flush=True)
        try:
            with ExitStack() as running:
                for name, port in ports.items():
                    running.enter_context(server(command(name, python, port, args.processes), env, port,
                                                 work / f"{name}.log"))
                results = measure(ports, args.rounds, args.seconds, args.connections, scenarios, round_lines)
        finally:
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
    if any(r.errors or r.non_2xx for r in results.values()):
        print(f"errors or non-2xx answers: the servers' logs are kept in {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)

    when = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    header = (f"# Benchmark {when}\n\n{os.cpu_count()} cores; {args.processes} processes per server; load: "
              f"{'wrk' if LOAD is wrk else 'python'} with {args.connections} connections (4 for login), "
              f"{args.seconds:g} s per scenario, median of {args.rounds} rounds, each starting with the next server; "
              f"PostgreSQL + Redis; APP_ENV=production; tornado_server.py's server.http: "
              f"{args.http or 'default (auto: httptools where installed)'}."
              "\n\n")
    rounds = "\n".join(round_lines)
    report = f"{header}{table(results, names)}\n\nEvery round, in the order run:\n\n```\n{rounds}\n```\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{when}.md").write_text(report)
    print("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
