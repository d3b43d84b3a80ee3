"""From an outside review of the httptools path, in process: response framing of a streamed (long) body for
answers that carry none (L4)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from wsgi_served import Served, serving

from tests.support import read_until_closed


@pytest.fixture
def served() -> Iterator[Served]:
    def wsgi_app(environ: dict, start_response: Callable) -> Iterator[bytes]:
        status = environ["PATH_INFO"][1:].replace("_", " ")
        start_response(status, [("Content-Type", "text/plain")])
        return iter([b"x" * 300_000])  # longer than PIECE: streamed

    for serve in serving("httptools"):
        yield serve(wsgi_app)


@pytest.mark.parametrize(("method", "status"), [("HEAD", "200_OK"), ("GET", "204_No_Content"),
                                                ("GET", "304_Not_Modified")])
def test_an_answer_without_a_body_writes_none_even_when_the_app_streams_one(served: Served, method: str,
                                                                           status: str) -> None:
    """The streamed path writes the app's bytes after a HEAD, 204 or 304 head, unframed: on a keep-alive
    connection the client reads them as the next answer (a desync). Werkzeug empties these bodies, a bare WSGI
    app or middleware need not."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(f"{method} /{status} HTTP/1.1\r\nHost: x\r\n\r\nGET /200_OK HTTP/1.1\r\nHost: x\r\n"
                     f"Connection: close\r\n\r\n".encode())
        answer = read_until_closed(sock)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), f"{len(rest)} bytes after the {status} head: {rest[:40]!r}"

