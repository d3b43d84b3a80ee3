"""The s3 backend in a real server process against moto_server: 16 MiB uploads streamed in parts without holding
them in memory, a proxied Range download, a stalled proxied download that holds no place on the store, an
unreachable store answered with 503 within 2 s over HTTP, and the direct-upload example of docs/files.md run as
written, and its shell blocks: moto_server's bucket made with
`.venv/bin/python -c` and the `export` of the APP_S3__ settings, a server upload with `curl -F` and its 302's
Location (`grep -i`), and the form POST with `curl -G --data-urlencode`, `jq`, `stat` and `curl --json`."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from test_server_limits import MiB, PeakRSS, rss, run_together

from tests.fixtures.accounts import signed_in
from tests.support import PROJECT_DIR, free_port
from tests.test_docs import fenced_blocks

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
UPLOADS, SIZE = 8, 16 * MiB


def s3_env(bucket: Any, **overrides: Any) -> dict[str, str]:
    values = {**bucket.settings(**overrides)}
    return {"APP_FILES__BACKEND": "s3", **{f"APP_S3__{key.upper()}": str(value) for key, value in values.items()}}


def test_parallel_16_mib_uploads_stream_to_the_store_in_parts(live_server: Any, test_settings: dict,
                                                               s3_bucket: Any) -> None:
    server = live_server(env={"APP_SERVER__THREADS": "4", **s3_env(s3_bucket)})
    token = signed_in(server.url, test_settings)
    data = b"%PDF-1.7\n" + os.urandom(SIZE - 9)
    url, headers = f"{server.url}/api/files/", {"token": token}
    assert requests.post(url, files={"file": ("warm.pdf", data[:MiB])}, headers=headers, timeout=20).status_code == 201
    before = rss(server.process.pid)
    sampler = PeakRSS(server.process.pid)
    started = time.monotonic()
    one = requests.post(url, files={"file": ("one.pdf", data)}, headers=headers, timeout=45)
    single = sampler.stop() - before
    seconds = time.monotonic() - started
    sampler = PeakRSS(server.process.pid)
    answers = run_together(UPLOADS, lambda i: requests.post(url, files={"file": (f"{i}.pdf", data)},
                                                            headers=headers, timeout=60))
    growth = sampler.stop() - before
    print(f"RSS before {before / MiB:.0f} MiB; one 16 MiB upload: peak growth {single / MiB:.1f} MiB in "
          f"{seconds:.2f} s; {UPLOADS} in parallel: peak growth {growth / MiB:.1f} MiB")
    for answer in (one, *answers):
        assert answer.status_code == 201, answer.text
        assert answer.json()["data"]["sha256"] == hashlib.sha256(data).hexdigest()
    keys = s3_bucket.object_keys()
    assert len(keys) == UPLOADS + 2
    etags = [s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)["ETag"].strip('"') for key in keys]
    assert sum(etag.endswith("-2") for etag in etags) == UPLOADS + 1  # 8 MiB parts: two each
    assert growth < 48 * MiB


def test_a_proxied_range_and_an_unreachable_store_over_http(live_server: Any, test_settings: dict,
                                                             s3_bucket: Any) -> None:
    server = live_server(env=s3_env(s3_bucket, proxy_downloads=True))
    token = signed_in(server.url, test_settings)
    data = b"%PDF-1.7\n" + os.urandom(300_000)
    meta = requests.post(f"{server.url}/api/files/", files={"file": ("r.pdf", data)}, headers={"token": token},
                         timeout=10).json()["data"]
    part = requests.get(meta["url"], headers={"token": token, "Range": "bytes=1000-1999"}, timeout=10)
    assert part.status_code == 206 and part.content == data[1000:2000]

    closed = live_server(env=s3_env(s3_bucket, endpoint_url=f"http://127.0.0.1:{free_port()}"))
    token = signed_in(closed.url, test_settings, phone="+8613900139000")
    started = time.monotonic()
    answer = requests.post(f"{closed.url}/api/files/", files={"file": ("r.pdf", data)}, headers={"token": token},
                           timeout=10)
    seconds = time.monotonic() - started
    print(f"unreachable store: {answer.status_code} in {seconds:.3f} s")
    assert answer.status_code == 503 and answer.json()["status"] == "SERVICE_UNAVAILABLE" and seconds < 2


def test_a_proxied_download_whose_client_reads_nothing_holds_no_place_on_the_store(
        live_server: Any, test_settings: dict, s3_bucket: Any) -> None:
    """One place (server.threads 2): a client that stops reading its download does not make others' S3 calls 503."""
    server = live_server(env={"APP_SERVER__THREADS": "2", **s3_env(s3_bucket, proxy_downloads=True)})
    owner = signed_in(server.url, test_settings)
    other = signed_in(server.url, test_settings, phone="+8613900139000")
    data = b"%PDF-1.7\n" + os.urandom(9 * MiB)
    meta = requests.post(f"{server.url}/api/files/", files={"file": ("big.pdf", data)}, headers={"token": owner},
                         timeout=30).json()["data"]
    host, port = server.url.removeprefix("http://").split(":")
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(10)
        stalled.connect((host, int(port)))
        stalled.sendall(f"GET /api/files/{meta['id']}/content HTTP/1.1\r\nHost: x\r\ntoken: {owner}\r\n\r\n"
                        .encode())
        assert stalled.recv(12) == b"HTTP/1.1 200"  # the download has begun; nothing more is read
        for name in ("a.pdf", "b.pdf"):
            answer = requests.post(f"{server.url}/api/files/", files={"file": (name, b"%PDF-1.7\nhello")},
                                   headers={"token": other}, timeout=30)
            assert answer.status_code == 201, answer.text


def test_the_direct_upload_example_in_docs_files_md_runs(live_server: Any, test_settings: dict, s3_bucket: Any,
                                                         tmp_path: Path) -> None:
    [example] = [block.text for block in fenced_blocks(PROJECT_DIR / "docs" / "files.md")
                 if block.lang == "python" and "upload-url" in block.text]
    server = live_server(env=s3_env(s3_bucket))
    token = signed_in(server.url, test_settings)
    script = example.replace("http://localhost:5000", server.url).replace("<access token>", token)
    assert script != example
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(5000))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "201"
    assert [key.split("/")[:2] for key in s3_bucket.object_keys()] == [["uploads", "u1"]]


def test_the_shell_blocks_of_docs_files_md_run(live_server: Any, test_settings: dict, start_s3_server: Any,
                                              tmp_path: Path) -> None:
    moto, setup, server_upload, direct = [block.text for block in fenced_blocks(PROJECT_DIR / "docs" / "files.md")
                                          if block.lang == "sh"]
    assert ".venv/bin/moto_server -H 127.0.0.1 -p 9000" in moto
    store = start_s3_server()  # the same program, on a free port
    setup = setup.replace("9000", str(store.port))  # APP_S3__ENDPOINT_URL=http://127.0.0.1:9000 in the docs
    settings = subprocess.run(["bash", "-ec", setup + "\nenv"], cwd=PROJECT_DIR, capture_output=True, text=True,
                              timeout=60)
    assert settings.returncode == 0, settings.stderr
    env = dict(line.split("=", 1) for line in settings.stdout.splitlines() if line.startswith("APP_"))
    assert store.client().head_bucket(Bucket=env["APP_S3__BUCKET"])
    server = live_server(env=env)
    token = signed_in(server.url, test_settings)
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    (tmp_path / "notes.txt").write_text("hello\n")
    run = {**os.environ, "TOKEN": token}  # the direct block keeps the form in form.json (`jq .data > form.json`)
    here = server.url.removeprefix("http://")
    for block, expected in ((server_upload, "Location: http://127.0.0.1"), (direct, '"content_type": "text/plain"')):
        result = subprocess.run(["bash", "-ec", block.replace("localhost:5000", here)], cwd=tmp_path, env=run,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and expected in result.stdout, (result.stdout, result.stderr)
    keys = [item["Key"] for item in store.client().list_objects_v2(Bucket="my-uploads")["Contents"]]
    shapes = sorted(re.sub(r"[0-9a-f]{32}", "<hex>", key) for key in keys)
    assert shapes == ["uploads/<hex>.png", "uploads/u1/<hex>.txt"], keys  # the incoming object moved
