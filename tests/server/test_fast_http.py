"""The httptools path (server.http = "httptools") over raw sockets: request smuggling refused, head limits and
timeouts, Expect, pipelining, and the same environ as Tornado's path."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wsgi_served import Served, serving

from app.server.fast_http import HEAD_LIMIT
from tests.support import read_until_closed


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    yield from serving("httptools")


@pytest.fixture
def seen(serve: Any) -> Served:
    """An app that answers with the body it read; ``served.calls`` lists the paths it was called for."""
    calls: list[str] = []

    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body or b"-"]

    served = serve(wsgi_app)
    served.calls = calls  # type: ignore[attr-defined]
    return served


def send(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return read_until_closed(sock)


SMUGGLING = {
    "content-length and transfer-encoding": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    "transfer-encoding and content-length": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                            b"Content-Length: 6\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    "two content-lengths": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 27\r\n\r\n"
                           b"GET /smuggled HTTP/1.1\r\n\r\n",
    "a content-length list": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0\r\n\r\n",
    "a signed content-length": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n",
    "a chunk size that is not hex": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"0x1\r\na\r\n0\r\n\r\n",
    "a chunk size past 64 bits": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"10000000000000001\r\na\r\n0\r\n\r\n",
    "a chunk longer than its size": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"1\r\nab\r\n0\r\n\r\n",
    "a transfer-encoding that is not chunked": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "chunked not last": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Thing: a\r\n b\r\n\r\n",
    "obs-fold hiding a header": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Thing: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
    "bare LF ending the request line": b"GET /a HTTP/1.1\nHost: x\r\n\r\n",
    "bare LF between headers": b"GET /a HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",
    "bare CR between headers": b"GET /a HTTP/1.1\r\nHost: x\rX-Thing: a\r\n\r\n",
    "a space before the colon": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "a control character in a value": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Thing: a\x01b\r\n\r\n",
    "HTTP/0.9": b"GET /a\r\n\r\n",
    "HTTP/2.0 over HTTP/1 framing": b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("raw", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_an_ambiguous_or_malformed_request_is_400_and_the_connection_closes(seen: Served, raw: bytes) -> None:
    answer = send(seen.port, raw)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1") == 1  # nothing after it was served
    assert seen.calls == []  # type: ignore[attr-defined]


def test_a_chunked_body_with_extensions_and_trailers_reaches_the_app_whole(seen: Served) -> None:
    answer = send(seen.port, b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                             b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nabcde")


def test_a_head_over_the_limit_is_431(seen: Served) -> None:
    with socket.create_connection(("127.0.0.1", seen.port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        try:
            for _ in range(HEAD_LIMIT // len(filler) * 4):
                sock.sendall(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431 ")
    assert seen.calls == []  # type: ignore[attr-defined]


def test_a_head_sent_too_slowly_is_408_after_the_header_timeout(serve: Any) -> None:
    served = serve(lambda environ, start_response: [], timeouts=(0.5, 75))
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /a HTTP/1.1\r\n")
        for _ in range(3):
            time.sleep(0.1)
            sock.sendall(b"X-Slow: 1\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        assert 0.5 <= time.monotonic() - started < 3


def test_an_idle_keep_alive_connection_closes_after_the_keep_alive_timeout(serve: Any) -> None:
    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    served = serve(wsgi_app, timeouts=(10, 0.5))
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        assert read_until_closed(sock).endswith(b"\r\n\r\nok")  # the answer, then the close once idle
        assert 0.5 <= time.monotonic() - started < 3


def test_expect_100_continue_is_answered_before_the_body_is_sent(seen: Served) -> None:
    with socket.create_connection(("127.0.0.1", seen.port), timeout=5) as sock:
        sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        assert sock.recv(1024) == b"HTTP/1.1 100 (Continue)\r\n\r\n"
        sock.sendall(b"body")
        assert read_until_closed(sock).endswith(b"\r\n\r\nbody")


def test_expect_100_continue_over_the_limit_is_413_without_a_100(seen: Served) -> None:
    answer = send(seen.port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_pipelined_requests_are_answered_in_order(seen: Served) -> None:
    answer = send(seen.port, b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                             b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
                             b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"HTTP/1.1")[0] for part in answer.split(b"\r\n\r\n")[1:]]
    assert bodies == [b"one", b"two", b"-"]
    assert seen.calls == ["/1", "/2", "/3"]  # type: ignore[attr-defined]


def test_http_1_0_closes_unless_it_asks_for_keep_alive(seen: Served) -> None:
    assert b"connection:" not in send(seen.port, b"GET /a HTTP/1.0\r\n\r\n").lower()  # closed: read_until_closed ended
    with socket.create_connection(("127.0.0.1", seen.port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"\r\nConnection: Keep-Alive\r\n" in sock.recv(4096)
        sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
        assert read_until_closed(sock).endswith(b"-")


def test_the_app_sees_the_environ_tornado_gives_it() -> None:
    environs: list[dict] = []

    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        environs.append({k: v for k, v in environ.items() if k not in ("wsgi.input", "wsgi.errors")})
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    raw = (b"POST /a%20b/%C3%A9?q=1&r=%20 HTTP/1.1\r\nHost: example.org:8080\r\nContent-Type: application/json\r\n"
           b"X-Many: 1\r\nx-many: 2\r\nAccept-Language:  zh-CN \r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    for http in ("tornado", "httptools"):
        for serve in serving(http):
            served = serve(wsgi_app)
            assert send(served.port, raw).endswith(b"ok")
    tornado, httptools = environs
    assert httptools == tornado


def test_a_host_whose_port_is_not_a_number_is_400(seen: Served) -> None:
    answer = send(seen.port, b"GET /a HTTP/1.1\r\nHost: x:abc\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1") == 1
    assert seen.calls == []  # type: ignore[attr-defined]
