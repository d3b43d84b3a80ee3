"""The WSGI side of the httptools path (fast_http.py): a parsed request, its environ, the answer's head.

The environ is the one Tornado's WSGIContainer and WSGIAdapter.environ build, so the app cannot tell the two
paths apart; the head is framed as Tornado's HTTP1Connection frames it.
"""

from __future__ import annotations

import sys
import tempfile
from io import BytesIO
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from app.server.adapter import BODILESS
from app.server.bodies import SPOOL


class Request:
    """One request as the parser hands it over: method, target, version, headers, and its body once read."""

    __slots__ = ("body", "chunked", "expect", "headers", "keep_alive", "limit", "method", "refusal", "size",
                 "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}  # Title-Case names, repeated ones joined with "," as Tornado does
        self.method = self.version = self.expect = ""
        self.keep_alive = self.chunked = False
        self.body: IO[bytes] | None = None
        self.size = self.limit = 0
        self.refusal: bytes | None = None  # a 413 to write instead of calling the app

    def add_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").title()
        text = value.decode("latin-1").strip()
        self.headers[key] = f"{self.headers[key]},{text}" if key in self.headers else text

    def header(self, name: str) -> str:
        """The value of header ``name`` (any case), "" when it was not sent."""
        return self.headers.get(name.title(), "")

    def write_body(self, data: bytes) -> None:
        if self.body is None:
            self.body = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 closed by close_body
        self.body.write(data)
        self.size += len(data)

    def close_body(self) -> None:
        if self.body is not None:
            self.body.close()

    def environ(self, remote_ip: str, scheme: str) -> dict[str, Any]:
        """WSGIContainer.environ for this request, with the spooled body as WSGIAdapter.environ gives it."""
        target = self.url.decode("latin-1")
        path, _, query = target.partition("?")
        headers = dict(self.headers)
        host = headers.get("Host") or "127.0.0.1"
        hostport = host.split(":")
        name, port = (hostport[0], hostport[1]) if len(hostport) == 2 else (host, "443" if scheme == "https" else "80")
        if self.body is not None:
            self.body.seek(0)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.method, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
            "REMOTE_ADDR": remote_ip, "SERVER_NAME": name, "SERVER_PORT": str(int(port)),
            "SERVER_PROTOCOL": self.version, "wsgi.version": (1, 0), "wsgi.url_scheme": scheme,
            "wsgi.input": self.body if self.body is not None else BytesIO(), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        if "Content-Type" in headers:
            environ["CONTENT_TYPE"] = headers.pop("Content-Type")
        if "Content-Length" in headers:
            environ["CONTENT_LENGTH"] = headers.pop("Content-Length")
        if self.chunked:  # its chunks are joined in the spool: the app sees a body of known length
            headers.pop("Transfer-Encoding", None)
        if self.chunked or "CONTENT_LENGTH" in environ:
            environ["CONTENT_LENGTH"] = str(self.size)
        for key, value in headers.items():
            environ["HTTP_" + key.replace("-", "_").upper()] = value
        return environ


def head_problem(request: Request) -> str | None:
    """What makes a parsed head one to refuse with a 400, or None: a transfer coding other than chunked alone
    (llhttp decodes the chunks and would drop the rest, RFC 9112 6.1), or an HTTP/1.1 request without exactly one
    Host of one token (RFC 9112 3.2; repeated headers are joined with ",")."""
    coding = request.header("Transfer-Encoding")
    if coding and coding.lower() != "chunked":
        return "a transfer coding other than chunked"
    host = request.headers.get("Host")
    if request.version == "HTTP/1.1" and (host is None or any(c in host for c in ", \t")):
        return "not exactly one Host"
    return None


def has_length(headers: list[tuple[str, str]]) -> bool:
    return any(name.lower() == "content-length" for name, _ in headers)


def response_head(request: Request, status: str, headers: list[tuple[str, str]], body: bytes | None,
                  keep_alive: bool) -> tuple[bytes, bool]:
    """The status line and headers, as Tornado frames them; and whether the body goes out in chunks.

    ``body`` is the whole body when it is known, None when it streams. A known body without a Content-Length
    gets one; a streamed one without it goes chunked to an HTTP/1.1 client (an HTTP/1.0 client gets the body
    whole: fast_http reads it all first).
    """
    code = status[:3]
    lines = [f"HTTP/1.1 {status}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    chunked = False
    if code not in BODILESS and not has_length(headers):
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif request.method != "HEAD":
            chunked = True
            lines.append("Transfer-Encoding: chunked")
    if request.version == "HTTP/1.1" and not keep_alive:
        lines.append("Connection: close")
    elif request.version == "HTTP/1.0" and keep_alive:
        lines.append("Connection: Keep-Alive")
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("Illegal characters (CR or LF) in a response header")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n", chunked


def chunk(piece: bytes) -> bytes:
    """``piece`` framed as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(piece), piece)
