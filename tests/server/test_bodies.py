"""Request bodies through the adapter: within the limits they reach the app, over them a 413 before reading."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wsgi_served import HTTP, LIMITS, Served, serving

from app.server.bodies import BodyLimits


@pytest.fixture(params=HTTP)
def serve(request: pytest.FixtureRequest) -> Iterator[Callable[..., Served]]:
    yield from serving(request.param)


@pytest.fixture
def echo(serve: Any) -> Served:
    """An app that answers with the size of the body it read; ``served.calls`` counts its calls."""
    calls: list[int] = []

    def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
        body = environ["wsgi.input"].read()
        calls.append(len(body))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(body)).encode()]

    served = serve(wsgi_app)
    served.calls = calls  # type: ignore[attr-defined]
    return served


def exchange(port: int, head: str, body: bytes = b"") -> bytes:
    """Send a request; the answer, read to its Content-Length (or until the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
                top, _, rest = answer.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: (\d+)", top)
                if length and len(rest) >= int(length.group(1)):
                    break
        except ConnectionResetError:  # the server closed with the body unread
            pass
        return answer


def refused(answer: bytes, request_id: str | None = None) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
    head = head.lower()  # header names are case-insensitive
    assert b"\r\nconnection: close" in head
    envelope = json.loads(body)
    assert envelope["code"] == 413 and envelope["status"] == "PAYLOAD_TOO_LARGE" and envelope["field"] is None
    assert f"x-request-id: {envelope['request_id']}".encode() in head
    if request_id:
        assert envelope["request_id"] == request_id
    return envelope


def test_multipart_bodies_get_the_upload_limit_and_others_the_smaller_one() -> None:
    limits = BodyLimits(upload=1000, other=10)
    assert limits.for_type("multipart/form-data; boundary=x") == 1000
    assert limits.for_type("Multipart/Form-Data") == 1000
    assert limits.for_type("application/json") == 10 and limits.for_type("") == 10


def test_a_json_body_over_its_limit_is_413_and_never_reaches_the_app(echo: Served) -> None:
    size = LIMITS.other + 1
    answer = exchange(echo.port, f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {size}\r\nX-Request-ID: mine-1\r\n\r\n")
    refused(answer, request_id="mine-1")
    assert echo.calls == []  # type: ignore[attr-defined]


def test_a_malformed_request_id_is_replaced_in_the_413(echo: Served) -> None:
    answer = exchange(echo.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
                                 "X-Request-ID: not well formed!\r\n\r\n")
    assert refused(answer)["request_id"] != "not well formed!"


def test_a_multipart_body_may_be_larger_up_to_the_upload_limit(echo: Served) -> None:
    head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n"
    assert exchange(echo.port, head.format(LIMITS.upload), b"m" * LIMITS.upload).endswith(
        str(LIMITS.upload).encode())
    refused(exchange(echo.port, head.format(LIMITS.upload + 1)))


def test_a_chunked_body_is_refused_when_it_reaches_the_limit(echo: Served) -> None:
    piece = b"c" * 512
    chunks = b"".join(b"200\r\n" + piece + b"\r\n" for _ in range(4))  # 2 KiB, over the 1 KiB limit
    answer = exchange(echo.port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", chunks)
    refused(answer)
    assert echo.calls == []  # type: ignore[attr-defined]


def test_a_chunked_body_within_the_limit_reaches_the_app(echo: Served) -> None:
    answer = exchange(echo.port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                      b"200\r\n" + b"c" * 512 + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"512")
