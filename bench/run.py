"""Benchmark: tornado_server.py against gunicorn serving the same app, in one run. `make bench`.

Starts both with the same number of processes (one per core unless --processes) in production settings on a
fresh PostgreSQL database and a real Redis, then loads each with wrk (or the Python load generator below when
wrk is missing), in rounds that alternate the servers so that machine noise hits both alike:

    GET  /api/health/live        no I/O
    GET  /api/users/me           one Redis call and one SQL query (a signed-in read)
    POST /api/auth/login         an Argon2 hash per request (slow on purpose)
    GET  /api/health/live        while 4 clients log in in a loop: does hashing stall everything else?

Writes a markdown table (req/s, p50, p99, errors and non-2xx, ratios) to bench/results/<UTC time>.md and prints
it. Environment: BENCH_DATABASE_URL (a PostgreSQL server URL; default postgresql://postgres@127.0.0.1:5432/test,
on which a database bench_<pid> is made and dropped) and BENCH_REDIS_URL (default redis://127.0.0.1:6379/15;
keys under a bench_<pid>: prefix, deleted afterwards).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "bench" / "results"
PHONE, PASSWORD = "+8613800138000", "quiet harbour kestrel 1"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on {port} not ready within {timeout}s")


# ------------------------------------------------------------------------------------------------ load


def wrk(url: str, seconds: float, connections: int, method: str = "GET", body: str = "",
        headers: dict[str, str] | None = None) -> Result:
    script = [f'wrk.method = "{method}"']
    if body:
        script.append(f"wrk.body = {json.dumps(body)}")
    for name, value in (headers or {}).items():
        script.append(f'wrk.headers["{name}"] = "{value}"')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write("\n".join(script) + "\n")
    try:
        command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                   "--timeout", "10s", "--latency", "-s", lua.name, url]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(lua.name)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return Result(rps, latency("50"), latency("99"), errors, int(non_2xx[1]) if non_2xx else 0)


def python_load(url: str, seconds: float, connections: int, method: str = "GET", body: str = "",
                headers: dict[str, str] | None = None) -> Result:
    """wrk's job with threads and keep-alive connections, for machines without wrk (it reaches fewer req/s)."""
    match = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    assert match
    host, port, path = match[1], int(match[2]), match[3]
    latencies: list[float] = []
    counts = {"errors": 0, "non_2xx": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        mine: list[float] = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body or None, headers=headers or {})
                response = connection.getresponse()
                response.read()
            except OSError:
                with lock:
                    counts["errors"] += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=10)
                continue
            mine.append(time.perf_counter() - started)
            if not 200 <= response.status < 300:
                with lock:
                    counts["non_2xx"] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(len(latencies) / seconds, cuts[49] * 1000, cuts[98] * 1000, counts["errors"], counts["non_2xx"])


LOAD = wrk if shutil.which("wrk") else python_load


# --------------------------------------------------------------------------------------------- servers


@contextmanager
def database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this run; dropped afterwards."""
    import psycopg

    name = f"bench_{os.getpid()}"
    plain = re.sub(r"^postgresql(\+\w+)?://", "postgresql://", server_url)  # for psycopg itself
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield plain.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, process)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def login_token(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/api/auth/login", body=json.dumps({"account": PHONE, "password": PASSWORD}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = json.loads(response.read())
    if response.status != 200:
        raise SystemExit(f"login failed: {data}")
    return str(data["data"]["token"])


def measure(ports: dict[str, int], rounds: int, seconds: float, connections: int) -> dict[tuple[str, str], Result]:
    """Every scenario on every server, rounds alternating the servers; the median round of each."""
    login_body = json.dumps({"account": PHONE, "password": PASSWORD})
    json_headers = {"Content-Type": "application/json"}
    runs: dict[tuple[str, str], list[Result]] = {}
    for round_number in range(rounds):
        order = list(ports) if round_number % 2 == 0 else list(reversed(ports))
        for name in order:
            base = f"http://127.0.0.1:{ports[name]}"
            scenarios = {
                "GET /api/health/live": lambda base=base: LOAD(f"{base}/api/health/live", seconds, connections),
                # a token of a session just opened: the login scenarios open more than auth.max_sessions
                "GET /api/users/me": lambda base=base, name=name: LOAD(
                    f"{base}/api/users/me", seconds, connections, headers={"token": login_token(ports[name])}),
                "POST /api/auth/login": lambda base=base: LOAD(
                    f"{base}/api/auth/login", seconds, 4, "POST", login_body, json_headers),
                "GET /api/health/live while 4 clients log in": lambda base=base: under_logins(
                    base, seconds, login_body, json_headers),
            }
            for scenario, run in scenarios.items():
                result = run()
                runs.setdefault((scenario, name), []).append(result)
                print(f"round {round_number + 1} {name:9} {scenario:45} {result.rps:8.0f} req/s  "
                      f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                      f"errors {result.errors}  non-2xx {result.non_2xx}", flush=True)
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
    tornado, gunicorn = names
    lines += ["", "| ratio | value | target |", "|---|---:|---|"]
    def ratio_of(a: Result, b: Result) -> float:
        return a.rps / b.rps if b.rps else float("nan")  # a scenario that finished nothing (a very short run)

    for scenario in scenarios[:3]:
        ratio = ratio_of(results[(scenario, tornado)], results[(scenario, gunicorn)])
        target = "≥ 1.0" if scenario == "GET /api/users/me" else ""
        lines.append(f"| tornado / gunicorn, `{scenario}` | {ratio:.2f} | {target} |")
    me = ratio_of(results[("GET /api/users/me", tornado)], results[("GET /api/health/live", tornado)])
    lines.append(f"| tornado: `/api/users/me` / `/api/health/live` | {me:.2f} | ≥ 0.6 |")
    for name in names:
        p99 = results[("GET /api/health/live while 4 clients log in", name)].p99_ms
        lines.append(f"| {name}: p99 of `/api/health/live` while 4 clients log in | {p99:.1f} ms | ≤ 50 ms |")
    failed = sum(r.errors + r.non_2xx for (_, name), r in results.items() if name == tornado)
    lines.append(f"| tornado: errors and non-2xx, all scenarios | {failed} | 0 |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="per server (default: cores)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario and round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="tornado_server.py's server.threads (default: its own)")
    args = parser.parse_args()

    import redis

    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"bench_{os.getpid()}:"
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "gunicorn").exists():
        raise SystemExit("gunicorn is missing: pip install -r bench/requirements.txt (make bench does)")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with database(os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")) as db_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
        env.update({"APP_ENV": "production", "SECRET_KEY": "bench-" + "s" * 40, "DATABASE_URL": db_url,
                    "REDIS_URL": redis_url, "APP_REDIS__PREFIX": prefix, "APP_LOG__FILE": str(work / "app.log"),
                    "APP_AUTH__MAX_FAILURES_PER_IP": "1000000",
                    "APP_APP__PUBLIC_URL": "http://127.0.0.1",  # production refuses other hosts
                    "APP_SMS__GATEWAY": "file", "APP_SMS__OUTBOX": str(work / "sms.jsonl")})
        python = str(bin_dir / "python")
        subprocess.run([python, "manage.py", "db", "upgrade"], cwd=PROJECT_DIR, env=env, check=True,
                       capture_output=True)
        subprocess.run([python, "manage.py", "create-admin", "--phone", PHONE, "--nickname", "bench", "--password",
                        PASSWORD], cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
        ports = {"tornado": free_port(), "gunicorn": free_port()}
        if args.threads:
            env["APP_SERVER__THREADS"] = str(args.threads)
        tornado = [python, "tornado_server.py", "--port", str(ports["tornado"]), "--processes", str(args.processes)]
        gunicorn = [str(bin_dir / "gunicorn"), "--workers", str(args.processes), "--bind",
                    f"127.0.0.1:{ports['gunicorn']}", "app:create_app()"]
        print(f"load: {'wrk' if LOAD is wrk else 'python'}, {args.connections} connections, {args.seconds} s x "
              f"{args.rounds} rounds; {args.processes} processes per server", flush=True)
        try:
            with server(tornado, env, ports["tornado"], work / "tornado.log"), \
                    server(gunicorn, env, ports["gunicorn"], work / "gunicorn.log"):
                results = measure(ports, args.rounds, args.seconds, args.connections)
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
              f"{args.seconds:g} s per scenario, median of {args.rounds} alternating rounds; PostgreSQL + Redis; "
              f"APP_ENV=production.\n\n")
    report = header + table(results, ["tornado", "gunicorn"]) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{when}.md").write_text(report)
    print("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
