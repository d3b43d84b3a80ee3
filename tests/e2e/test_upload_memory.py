"""Parallel uploads against a real server process: each body costs the server a bounded piece of memory while it
is read (the rest waits in a temporary file), not its whole size."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import requests
from test_server_limits import MiB, PeakRSS, rss, run_together

from tests.fixtures.accounts import signed_in

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
UPLOADS, SIZE = 12, 16 * MiB


def test_parallel_16_mib_uploads_do_not_hold_their_bodies_in_memory(live_server: Any, test_settings: dict) -> None:
    server = live_server(env={"APP_SERVER__THREADS": "4"})
    token = signed_in(server.url, test_settings)
    data = b"%PDF-1.7\n" + os.urandom(SIZE - 9)
    url, headers = f"{server.url}/api/files/", {"token": token}
    assert requests.post(url, files={"file": ("warm.pdf", data[:MiB])}, headers=headers, timeout=20).status_code == 201
    before = rss(server.process.pid)
    sampler = PeakRSS(server.process.pid)
    answers = run_together(UPLOADS, lambda i: requests.post(url, files={"file": (f"{i}.pdf", data)}, headers=headers,
                                                            timeout=45))
    growth = sampler.stop() - before
    print(f"RSS before {before / MiB:.0f} MiB, peak growth {growth / MiB:.1f} MiB")
    for answer in answers:
        assert answer.status_code == 201, answer.text
        assert answer.json()["data"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert growth < 48 * MiB


def test_a_chunked_upload_within_the_limits_is_stored_whole(live_server: Any, test_settings: dict) -> None:
    server = live_server()
    token = signed_in(server.url, test_settings)
    data = b"%PDF-1.7\n" + os.urandom(3 * MiB)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.pdf\"\r\n"
            f"Content-Type: application/pdf\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    pieces = (body[i:i + 256 * 1024] for i in range(0, len(body), 256 * 1024))  # a generator: sent chunked
    created = requests.post(f"{server.url}/api/files/", data=pieces, timeout=20,
                            headers={"token": token, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert created.status_code == 201, created.text
    assert created.json()["data"]["sha256"] == hashlib.sha256(data).hexdigest()
