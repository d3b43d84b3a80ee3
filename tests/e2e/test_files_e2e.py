"""Files over real HTTP against a real server process: upload, download, range, delete."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from tests.fixtures.accounts import signed_in

pytestmark = pytest.mark.e2e



def test_upload_download_range_delete_over_http(live_server, test_settings, tmp_path):
    uploads = tmp_path / "served-uploads"
    server = live_server(env={"APP_FILES__LOCAL_DIR": str(uploads)})
    token = signed_in(server.url, test_settings)
    headers = {"token": token}
    data = b"%PDF-1.7\n" + os.urandom(300_000)
    created = requests.post(f"{server.url}/api/files/", files={"file": ("report.pdf", data)}, headers=headers,
                            timeout=10)
    assert created.status_code == 201, created.text
    meta = created.json()["data"]
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    whole = requests.get(meta["url"], headers=headers, timeout=10)
    assert whole.content == data and whole.headers["Content-Type"] == "application/pdf"
    part = requests.get(meta["url"], headers={**headers, "Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    assert len([p for p in uploads.rglob("*") if p.is_file()]) == 1
    assert requests.delete(f"{server.url}/api/files/{meta['id']}", headers=headers, timeout=10).status_code == 204
    assert [p for p in uploads.rglob("*") if p.is_file()] == []


PART = b'--b\r\nContent-Disposition: form-data; %s\r\nContent-Type: text/plain\r\n\r\nplain text\r\n--b--\r\n'


@pytest.mark.parametrize(("disposition", "status", "field"), [
    (b'name=""; filename="a.txt"', 400, ""),
    (b'name="file"; filename="a\x00b.txt"', 201, None),
])
def test_malformed_multipart_gets_the_apps_answer_not_a_bare_400(live_server, test_settings, disposition, status,
                                                                field):
    """Tornado's own form parsing answered these with an empty 400 before the app saw them."""
    server = live_server()
    token = signed_in(server.url, test_settings)
    response = requests.post(f"{server.url}/api/files/", data=PART % disposition, timeout=10,
                             headers={"token": token, "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == status and body.get("field") == field
    if status == 400:
        assert body["request_id"] == response.headers["X-Request-ID"]
    else:
        assert body["data"]["filename"] == "ab.txt"
