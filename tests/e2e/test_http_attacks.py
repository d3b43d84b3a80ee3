"""Attacks from an outside review of server.http = "httptools" (docs/operations.md#serving), with raw sockets against
a real tornado_server.py; each test runs on both paths, so Tornado's answer is the yardstick. Every one failed on the
httptools path when the review wrote it (H1, H2: high; M: medium; L: low)."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from typing import Any

import pytest

from tests.support import read_until_closed, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.usefixtures("each_http")]

PROBE_APP = ("--app", "probe_api:create_probe_app")
MiB = 1024 * 1024
ECHO = (b"POST /api/probe/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
VALID = b'{"name":"a","age":1}'
TINY = b"GET / HTTP/1.1\r\n\r\n"  # the shortest request


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1)) * 1024  # type: ignore[union-attr]


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return read_until_closed(sock)


def test_a_chunked_trailer_is_limited_like_a_head(live_server: Any) -> None:
    """H1: trailers are read without limit or timeout, and httptools joins one trailer's pieces with bytes +=
    (quadratic): one client grows the server by the size it sends and stalls the IOLoop for seconds."""
    server = live_server()
    before = rss(server.process.pid)
    refused = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(ECHO + b"Transfer-Encoding: chunked\r\n\r\n14\r\n" + VALID + b"\r\n0\r\nX-Trailer: ")
        try:
            for _ in range(16):
                sock.sendall(b"a" * MiB)
        except (BrokenPipeError, ConnectionResetError):
            refused = True
        time.sleep(0.5)
        grown = rss(server.process.pid) - before
    assert refused, f"16 MiB of one trailer were read; the server grew by {grown // MiB} MiB"


def test_a_client_that_never_reads_cannot_make_the_server_buffer_its_answers(live_server: Any) -> None:
    """H2: pipelined answers are written without waiting for the client to take the one before; a client that
    sends 300 small GETs for a 90 KB document and reads nothing makes the server hold ~27 MB, past the
    keep-alive timeout too (close() waits for the buffer to flush)."""
    server = live_server(env={"APP_SERVER__KEEP_ALIVE_TIMEOUT": "1"})
    document = len(send(server.port, b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert document > 50_000
    before = rss(server.process.pid)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(10)
        with contextlib.suppress(TimeoutError):  # the server stopped reading: what a bounded server does
            sock.sendall(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 300)
        time.sleep(4)  # the answers it will make, and the keep-alive timeout
        grown = rss(server.process.pid) - before
    assert grown < 12 * MiB, f"the server holds {grown // MiB} MiB of answers nobody reads"


def test_the_head_limit_holds_for_the_read_that_starts_a_head(live_server: Any) -> None:
    """M1: a read that starts a head is not counted against HEAD_LIMIT; a head that arrives whole in one read
    (here after a pause for pipelining) of 105 KB (HEAD_LIMIT is 64 KiB) is served instead of 431."""
    server = live_server(*PROBE_APP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/probe/slow?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /api/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # both parsed: the second waits, reading paused, so the next head waits whole
        sock.sendall(b"GET /api/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + b"X-Filler: 123456789\r\n" * 5_000 + b"\r\n")
        answer = read_until_closed(sock, timeout=10)
    assert statuses(answer)[:2] == [200, 200], answer[:300]
    assert statuses(answer)[2:] in ([], [431]), f"a 105 KB head was answered {statuses(answer)[2:]}"


@pytest.mark.parametrize("coding", [b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: identity, chunked\r\n",
                                    b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"])
def test_a_transfer_coding_besides_chunked_is_refused_not_dropped(live_server: Any, coding: bytes) -> None:
    """L1: httptools decodes the chunks and drops the other coding (the environ loses Transfer-Encoding): the app
    reads gzip bytes as if they were the body. RFC 9112 6.1: 501 for a coding the server does not understand."""
    server = live_server(*PROBE_APP)
    answer = send(server.port, ECHO + coding + b"Connection: close\r\n\r\n14\r\n" + VALID + b"\r\n0\r\n\r\n")
    assert statuses(answer)[0] in (400, 501), answer[:200]


@pytest.mark.parametrize("host", [b"", b"Host: a\r\nHost: b\r\n", b"Host: a b\r\n"],
                         ids=["missing", "twice", "with a space"])
def test_an_http_1_1_request_without_one_valid_host_is_400(live_server: Any, host: bytes) -> None:
    """L2: RFC 9112 3.2 (MUST 400); httptools serves it, with SERVER_NAME 127.0.0.1 or "a,b"."""
    server = live_server()
    answer = send(server.port, b"GET /api/health/live HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
    assert statuses(answer) == [400], answer[:200]
    if host != b"Host: a b\r\n" and "parsed by httptools" in server.output():  # the log says why, not llhttp's
        wait_until(lambda: "Malformed HTTP message from 127.0.0.1: not exactly one Host" in server.output())


def test_a_long_chunk_extension_is_refused(live_server: Any) -> None:
    """L3: chunk extensions are neither limited nor counted against the body limit, and a body has no timeout:
    a client keeps a connection busy forever sending bytes that never reach a limit."""
    server = live_server()
    refused = False
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(ECHO + b"Transfer-Encoding: chunked\r\n\r\n1;a=")
        try:
            for _ in range(8):
                sock.sendall(b"b" * MiB)
        except (BrokenPipeError, ConnectionResetError):
            refused = True
    assert refused, "8 MiB of one chunk extension were read"


def test_pipelined_requests_waiting_cost_about_what_they_take_on_the_wire(live_server: Any) -> None:
    """M2: requests pipelined behind a slow one queue as parsed objects, as many as one read holds (~14 000 of
    18 bytes in 256 KiB): about 2 MiB of server memory a connection, where Tornado holds the bytes unread."""
    server = live_server(*PROBE_APP)
    before = rss(server.process.pid)
    sockets = []
    try:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # what the kernel takes is enough
                sock.send(b"GET /api/probe/slow?seconds=5 HTTP/1.1\r\nHost: x\r\n\r\n" + TINY * 60_000)
            sockets.append(sock)
        time.sleep(2)
        grown = rss(server.process.pid) - before
    finally:
        for sock in sockets:
            sock.close()
    assert grown < 6 * MiB, f"8 connections' queued requests cost {grown // MiB} MiB"
