"""What every storage backend shares: the records it returns, reading an upload under the size limit, and the
download's Content-Disposition."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

from werkzeug.http import dump_options_header

from app.errors import PayloadTooLarge
from app.i18n import _

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Written:
    size: int
    sha256: str


@dataclass(frozen=True)
class Stored:
    """An object a backend holds: its key and when it was last written (epoch seconds)."""

    key: str
    modified_at: float


def read_limited(stream: IO[bytes], head: bytes, max_size: int) -> Iterator[bytes]:
    """``head`` then the rest of ``stream`` in chunks; 413 as soon as more than ``max_size`` bytes came."""
    total = 0
    chunk = head
    while chunk:
        total += len(chunk)
        if total > max_size:
            raise PayloadTooLarge(_("The file is larger than %(size)s bytes.", size=max_size))
        yield chunk
        chunk = stream.read(CHUNK)


def attachment(filename: str) -> str:
    """``Content-Disposition: attachment`` naming ``filename``, with an ASCII fallback (RFC 6266), as send_file
    writes it for local files."""
    try:
        filename.encode("ascii")
        names = {"filename": filename}
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
        names = {"filename": simple or "file", "filename*": "UTF-8''" + quote(filename, safe="!#$&+^`|~")}
    return dump_options_header("attachment", names)
