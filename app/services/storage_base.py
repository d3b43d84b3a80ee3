"""What every storage backend shares: the records it returns, and reading an upload under the size limit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from app.errors import PayloadTooLarge

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
            raise PayloadTooLarge(f"The file is larger than {max_size} bytes.")
        yield chunk
        chunk = stream.read(CHUNK)
