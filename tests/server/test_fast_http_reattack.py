"""Attacks on the fixes of the httptools path's earlier review (test_fast_http_attacks.py), in process, on both paths
with Tornado's answer as the yardstick. Each failed on the httptools path when written."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from wsgi_served import HTTP, Served, serving

from app.server.fast_http import FastServer
from app.server.http_connection import PIPELINED, SLICE


@pytest.fixture(params=HTTP)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            time.sleep(1)
        size = len(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(size).encode()]

    for serve in serving(request.param):
        yield serve(wsgi_app)


def read_until(sock: socket.socket, end: bytes, timeout: float) -> bytes:
    """What the server sends until ``end`` came, it closes, or ``timeout`` passes."""
    sock.settimeout(timeout)
    answer = b""
    try:
        while end not in answer and (data := sock.recv(65536)):
            answer += data
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


def test_a_pipelined_request_that_expects_100_continue_gets_it_when_its_turn_comes(served: Served) -> None:
    """Medium: the 100 is written only when no answer is being made; a request whose head came while the one before
    was answered never gets it, and a client that waits for it (as RFC 9110 10.1.1 allows) waits forever: its body
    phase has no deadline. Tornado reads the next head once the answer before is written, and sends the 100."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        answer = read_until(sock, b"100 (Continue)\r\n\r\n", timeout=4)
        assert b"HTTP/1.1 100 " in answer, f"no 100 Continue after the answer before: {answer!r}"
        sock.sendall(b"hello")
        assert read_until(sock, b"\r\n\r\n5", timeout=4).endswith(b"\r\n\r\n5")


def test_pipelined_requests_wait_parsed_at_most_sixteen_and_one_slice_more() -> None:
    """The PIPELINED check runs once per 4 KiB slice fed to the parser, so one slice more may wait parsed (it held
    ~150 of these short requests, about 100 KB; the rest waits unparsed, reading paused): bounded, as documented."""
    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        time.sleep(1 if environ["PATH_INFO"] == "/slow" else 0)
        start_response("200 OK", [])
        return [b"ok"]

    short = b"GET / HTTP/1.1\r\nHost:x\r\n\r\n"
    for serve in serving("httptools"):
        served = serve(wsgi_app)
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + short * 2000)
            time.sleep(0.3)
            assert isinstance(served.server, FastServer)
            waiting = max(len(connection.queue) for connection in served.server.connections)
            unparsed = max(len(connection.unparsed) for connection in served.server.connections)
        assert waiting <= PIPELINED + SLICE // len(short) + 1, f"{waiting} requests wait parsed"
        assert unparsed <= len(short) * 2000
