"""What a hostile or slow client costs a real server process: bodies over the limit, slow downloads, bad headers.

Memory is the server process's resident set (VmRSS in /proc/PID/status), sampled while the clients run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.accounts import signed_in
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60), pytest.mark.usefixtures("each_http")]
MiB = 1024 * 1024


# --- helpers -----------------------------------------------------------------------------------


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1)) * 1024


class PeakRSS:
    """Samples a process's RSS in a thread until stopped; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.last = pid, rss(pid), rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.last = rss(self.pid)
            self.peak = max(self.peak, self.last)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock``: read until its Content-Length is complete (or the server closes)."""
    sock.setblocking(True)
    sock.settimeout(10)
    raw = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:  # the server closed with our body unread: what came before it counts
            data = b""
        raw += data
        if b"\r\n\r\n" in raw:
            status, headers, body = parse_response(raw)
            if len(body) >= int(headers.get("content-length", "0")):
                return status, headers, body
        if not data:
            if not raw:
                raise AssertionError("the connection closed without an answer")
            return parse_response(raw)


def send_until_answered(port: int, head: str, body: Callable[[], bytes], size: int) -> tuple[int, dict, bytes]:
    """Send ``head``, then pieces from ``body()`` until ``size`` bytes went or the server answers; the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with sock:
        sock.sendall(head.encode("latin1"))
        sock.setblocking(False)
        pending, sent = b"", 0
        poller = select.poll()  # not select(): the suite may hold more than 1,024 descriptors by now
        poller.register(sock, select.POLLIN | select.POLLOUT)
        while sent < size or pending:
            events = dict(poller.poll(10_000)).get(sock.fileno(), 0)
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                break
            if not events & select.POLLOUT:
                raise AssertionError("the server neither reads nor answers")
            pending = pending or body()
            try:
                done = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += done
            pending = pending[done:]
        return read_response(sock)


def upload_head(path: str, size: int, content_type: str = "application/json", chunked: bool = False) -> str:
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{length}\r\n"
            f"X-Request-ID: big-{size}\r\n\r\n")


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(45)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def warm(server: Any) -> int:
    """A few requests so the threads and pools exist; the RSS after them."""
    for _ in range(6):
        assert requests.post(f"{server.url}/api/auth/login", json={}, timeout=10).status_code == 400
    return rss(server.process.pid)


def assert_413_envelope(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, (status, headers, body[:200])
    envelope = json.loads(body)
    assert envelope["code"] == 413 and envelope["status"] == "PAYLOAD_TOO_LARGE" and envelope["field"] is None
    assert envelope["message"] and envelope["request_id"] == headers["x-request-id"]


# --- bodies over the limit ---------------------------------------------------------------------

BIG = 95 * MiB
PIECE = b"x" * MiB


def test_concurrent_95_mb_bodies_are_refused_413_before_they_are_read(live_server: Any) -> None:
    server = live_server()
    before = warm(server)
    sampler = PeakRSS(server.process.pid)
    answers = run_together(6, lambda _: send_until_answered(
        server.port, upload_head("/api/auth/login", BIG), lambda: PIECE, BIG))
    growth = sampler.stop() - before
    print(f"RSS before {before / MiB:.0f} MiB, peak growth {growth / MiB:.1f} MiB")
    for status, headers, body in answers:
        assert_413_envelope(status, headers, body)
        assert headers["x-request-id"] == f"big-{BIG}"
    assert growth < 20 * MiB


def test_an_upload_over_files_max_size_is_413_before_it_is_read(live_server: Any) -> None:
    server = live_server(env={"APP_FILES__MAX_SIZE": str(MiB)})
    size = 2 * MiB
    status, headers, body = send_until_answered(
        server.port, upload_head("/api/files/", size, "multipart/form-data; boundary=b"), lambda: PIECE, size)
    assert_413_envelope(status, headers, body)


def test_a_json_body_far_below_the_upload_limit_is_refused_413(live_server: Any) -> None:
    server = live_server()
    response = requests.post(f"{server.url}/api/auth/login", data=b"{" + b" " * (2 * MiB) + b"}",
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert_413_envelope(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                        response.content)


def test_a_chunked_body_is_stopped_at_the_limit(live_server: Any) -> None:
    server = live_server()
    before = warm(server)
    sampler = PeakRSS(server.process.pid)
    chunk = f"{MiB:x}\r\n".encode() + PIECE + b"\r\n"
    answers = run_together(4, lambda _: send_until_answered(
        server.port, upload_head("/api/auth/login", BIG, chunked=True), lambda: chunk, BIG))
    growth = sampler.stop() - before
    print(f"RSS before {before / MiB:.0f} MiB, peak growth {growth / MiB:.1f} MiB")
    for answer in answers:
        assert_413_envelope(*answer)
    assert growth < 20 * MiB


def test_a_body_within_the_limits_still_reaches_the_app(live_server: Any, test_settings: dict) -> None:
    server = live_server()
    token = signed_in(server.url, test_settings)
    data = b"%PDF-1.7\n" + os.urandom(2 * MiB)
    created = requests.post(f"{server.url}/api/files/", files={"file": ("a.pdf", data)}, headers={"token": token},
                            timeout=20)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["sha256"] == hashlib.sha256(data).hexdigest()


# --- slow downloads ----------------------------------------------------------------------------



def test_slow_readers_of_a_large_file_do_not_make_the_server_hold_it(live_server: Any, test_settings: dict) -> None:
    server = live_server()
    token = signed_in(server.url, test_settings)
    data = b"%PDF-1.7\n" + os.urandom(16 * MiB - 9)
    created = requests.post(f"{server.url}/api/files/", files={"file": ("big.pdf", data)},
                            headers={"token": token}, timeout=30)
    assert created.status_code == 201, created.text
    path = f"/api/files/{created.json()['data']['id']}/content"
    assert requests.get(f"{server.url}{path}", headers={"token": token}, timeout=30).content == data  # warm
    before = rss(server.process.pid)
    sampler = PeakRSS(server.process.pid)
    readers = []
    for _ in range(8):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a slow reader's small window
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: {token}\r\n\r\n".encode())
        readers.append(sock)
    heads = [wait_until(lambda s=sock: s.recv(64 * 1024)) for sock in readers]  # the headers and a first piece
    assert all(head.startswith(b"HTTP/1.1 200") for head in heads)

    def settled() -> bool:  # the server wrote what the readers' windows take and now waits on them
        seen = rss(server.process.pid)
        time.sleep(0.3)
        return abs(rss(server.process.pid) - seen) < MiB // 4

    wait_until(settled, timeout=15, interval=0.2)
    growth = sampler.stop() - before
    print(f"RSS before {before / MiB:.0f} MiB, peak growth {growth / MiB:.1f} MiB")
    for sock, head in zip(readers, heads, strict=True):  # every reader still gets the whole file
        rest = bytearray(head.partition(b"\r\n\r\n")[2])
        sock.settimeout(10)
        while len(rest) < len(data) and (piece := sock.recv(MiB)):
            rest += piece
        sock.close()
        assert hashlib.sha256(rest).digest() == hashlib.sha256(data).digest()
    assert growth < 24 * MiB


# --- logs --------------------------------------------------------------------------------------


def test_a_bad_header_value_is_not_written_to_the_log(live_server: Any, server_env: dict[str, str]) -> None:
    server = live_server()
    secret = "s3cr3t-token-value-" + os.urandom(8).hex()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET /api/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: {secret}\x01\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")
    wait_until(lambda: "Malformed HTTP message" in server.output(), timeout=5)
    app_log = Path(server_env["APP_LOG__FILE"]).read_text(errors="replace")
    assert "Malformed HTTP message" in app_log
    assert secret not in server.output() and secret not in app_log
