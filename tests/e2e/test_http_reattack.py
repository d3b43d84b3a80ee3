"""Attacks on the fixes of the httptools path's earlier review (test_http_attacks.py), with raw sockets against a real
tornado_server.py on both paths, Tornado's answer as the yardstick. Each failed on the httptools path when written."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import pytest
from test_http_attacks import MiB, statuses

from tests.support import read_until_closed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90), pytest.mark.usefixtures("each_http")]

UPLOAD = (b"POST /api/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
          b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("framing", [b"0\r\nX-Trailer: " + b"b" * (2 * MiB) + b"\r\n\r\n",
                                     b"1;e=" + b"b" * (2 * MiB) + b"\r\nc\r\n0\r\n\r\n"], ids=["trailer", "extension"])
def test_framing_after_a_large_body_is_still_limited_like_a_head(live_server: Any, framing: bytes) -> None:
    """High: non-body bytes are allowed up to HEAD_LIMIT plus the body's bytes, so after a body of N bytes a
    trailer of N bytes is read; httptools joins a trailer's 4 KiB slices with bytes += (quadratic). With an upload
    (files.max_size, 16 MiB) one unauthenticated client stalls the IOLoop for seconds per request (7 MiB: 5.5 s).
    docs/operations.md#serving promises 64 KiB for them. Here 2 MiB of body, then 2 MiB of one trailer or of one
    chunk extension (served too, though not quadratic): Tornado refuses both."""
    server = live_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(UPLOAD + (b"100000\r\n" + b"a" * MiB + b"\r\n") * 2)
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(framing)
        answer = read_until_closed(sock, timeout=10)
    took = time.monotonic() - started
    assert statuses(answer) in ([], [400], [431]), f"2 MiB of framing were answered {statuses(answer)} ({took:.2f} s)"
