"""Load generators for bench/run.py: wrk when it is installed, else a Python stand-in that reaches fewer req/s."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int




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


