"""/api/files on the local backend: upload, metadata, content, ranges, deletion, limits, hostile names, access."""

from __future__ import annotations

import hashlib
import io
from urllib.parse import unquote

import pytest

from app.config import project_path, settings_of
from app.extensions import db
from app.models import File
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge

OWNER, STRANGER, ADMIN = "+8613800138000", "+8613900139000", "+8613700137000"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.7\n" + b"x" * 1000


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(deep_merge(accounts_settings, {"files": {"max_size": 64 * 1024}}))


@pytest.fixture
def tokens(client, make_user):
    make_user(OWNER), make_user(STRANGER), make_user(ADMIN, role="admin")
    return {name: login(client, phone)["token"] for name, phone in
            (("owner", OWNER), ("stranger", STRANGER), ("admin", ADMIN))}


def upload(client, token, data=PNG, name="picture.png"):
    return client.post("/api/files/", data={"file": (io.BytesIO(data), name)}, headers=bearer(token),
                       content_type="multipart/form-data")


def stored_files(app) -> list:
    root = settings_of(app).files.local_dir
    return [p for p in project_path(root).rglob("*") if p.is_file()]


def rows(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(File.id)))


def test_upload_then_download_gives_the_same_bytes(app, client, tokens):
    response = upload(client, tokens["owner"])
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert (data["filename"], data["size"], data["content_type"], data["backend"]) == ("picture.png", len(PNG),
                                                                                         "image/png", "local")
    assert data["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert data["url"].endswith(f"/api/files/{data['id']}/content")
    content = client.get(f"/api/files/{data['id']}/content", headers=bearer(tokens["owner"]))
    assert content.status_code == 200
    assert content.data == PNG
    assert content.headers["Content-Type"] == "image/png"
    assert content.headers["Content-Length"] == str(len(PNG))
    assert content.headers["Content-Disposition"].startswith("attachment;")
    assert len(stored_files(app)) == 1 and stored_files(app)[0].name != "picture.png"


def test_range_and_conditional_requests(client, tokens):
    file_id = upload(client, tokens["owner"]).get_json()["data"]["id"]
    url, headers = f"/api/files/{file_id}/content", bearer(tokens["owner"])
    part = client.get(url, headers={**headers, "Range": "bytes=8-15"})
    assert part.status_code == 206
    assert part.data == PNG[8:16]
    assert part.headers["Content-Range"] == f"bytes 8-15/{len(PNG)}"
    etag = client.get(url, headers=headers).headers["ETag"]
    assert client.get(url, headers={**headers, "If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("value", ["bytes=abc", "bytes=", "bytes=5-2", "bytes=1-2-3", "items=0-5", "abc",
                                   "bytes=0-1,4-5"])
def test_an_unparseable_range_is_ignored(client, tokens, value):
    """RFC 9110 14.2: a Range that cannot be parsed, of a unit we do not know, or of several ranges (which we do
    not serve) gets the whole body."""
    file_id = upload(client, tokens["owner"]).get_json()["data"]["id"]
    response = client.get(f"/api/files/{file_id}/content", headers={**bearer(tokens["owner"]), "Range": value})
    assert response.status_code == 200
    assert response.data == PNG and "Content-Range" not in response.headers


def test_an_unsatisfiable_range_is_416_naming_the_size(client, tokens):
    file_id = upload(client, tokens["owner"]).get_json()["data"]["id"]
    response = client.get(f"/api/files/{file_id}/content",
                          headers={**bearer(tokens["owner"]), "Range": f"bytes={len(PNG)}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(PNG)}"
    assert (response.get_json()["code"], response.get_json()["status"]) == (416, "RANGE_NOT_SATISFIABLE")


def test_delete_removes_the_row_and_the_bytes(app, client, tokens):
    file_id = upload(client, tokens["owner"]).get_json()["data"]["id"]
    assert len(stored_files(app)) == 1
    response = client.delete(f"/api/files/{file_id}", headers=bearer(tokens["owner"]))
    assert response.status_code == 204
    assert stored_files(app) == [] and rows(app) == 0
    assert client.get(f"/api/files/{file_id}", headers=bearer(tokens["owner"])).status_code == 404


def test_list_shows_only_your_files(client, tokens):
    upload(client, tokens["owner"]), upload(client, tokens["owner"], PDF, "doc.pdf"), upload(client, tokens["stranger"])
    data = client.get("/api/files/?per_page=1", headers=bearer(tokens["owner"])).get_json()["data"]
    assert (data["total"], data["pages"], len(data["items"])) == (2, 2, 1)
    assert data["items"][0]["filename"] == "doc.pdf"


def test_too_large_is_413_and_leaves_nothing(app, client, tokens):
    response = upload(client, tokens["owner"], PNG * 10)
    assert (response.status_code, response.get_json()["status"]) == (413, "PAYLOAD_TOO_LARGE")
    assert stored_files(app) == [] and rows(app) == 0


def test_body_far_over_the_limit_is_413_before_it_is_read(app, client, tokens):
    response = upload(client, tokens["owner"], PNG * 100)
    assert response.status_code == 413
    assert stored_files(app) == [] and rows(app) == 0


@pytest.mark.parametrize(("data", "name"), [
    (b"MZ\x90\x00" + b"\x00" * 100, "program.exe"),   # content not allowed
    (PNG, "picture.pdf"),                             # the name disagrees with the content
    (b"\x00\x01binary", "data.bin"),
])
def test_disallowed_type_is_415_and_leaves_nothing(app, client, tokens, data, name):
    response = upload(client, tokens["owner"], data, name)
    assert (response.status_code, response.get_json()["status"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert stored_files(app) == [] and rows(app) == 0


def test_missing_file_field_is_400(client, tokens):
    response = client.post("/api/files/", data={}, headers=bearer(tokens["owner"]),
                           content_type="multipart/form-data")
    assert (response.status_code, response.get_json()["field"]) == (400, "file")


@pytest.mark.parametrize(("name", "shown"), [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("/etc/passwd.txt", "passwd.txt"),
    ("C:\\Windows\\evil.txt", "C:Windowsevil.txt"),  # multipart treats "\\" as an escape: no separator is left
    ("bad\x00name.txt", "badname.txt"),
    ("报告 2026.txt", "报告 2026.txt"),
    ("a" * 300 + ".txt", "a" * 251 + ".txt"),
    ("semi;colon, comma.txt", "semi;colon, comma.txt"),
])
def test_hostile_names_are_stored_under_safe_keys_and_served_safely(app, client, tokens, name, shown):
    response = upload(client, tokens["owner"], b"plain text\n", name)
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert data["filename"] == shown
    [path] = stored_files(app)
    assert path.name.endswith(".txt") and len(path.stem) == 32 and path.is_relative_to(
        settings_of(app).files.local_dir)
    disposition = client.get(f"/api/files/{data['id']}/content", headers=bearer(tokens["owner"])).headers[
        "Content-Disposition"]
    assert "\n" not in disposition and "/" not in disposition and "\x00" not in disposition
    if "filename*=" in disposition:
        assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == shown


def test_another_users_file_is_forbidden_and_an_admin_may_read_it(client, tokens):
    file_id = upload(client, tokens["owner"]).get_json()["data"]["id"]
    for path in (f"/api/files/{file_id}", f"/api/files/{file_id}/content"):
        assert client.get(path, headers=bearer(tokens["stranger"])).status_code == 403
        assert client.get(path, headers=bearer(tokens["admin"])).status_code == 200
    assert client.delete(f"/api/files/{file_id}", headers=bearer(tokens["stranger"])).status_code == 403
    assert client.get(f"/api/files/{file_id}", headers=bearer(tokens["owner"])).status_code == 200


def test_files_need_a_token(client):
    assert client.get("/api/files/").status_code == 401
    assert client.post("/api/files/", data={"file": (io.BytesIO(PNG), "p.png")},
                       content_type="multipart/form-data").status_code == 401


def test_a_failed_commit_leaves_no_bytes(app, client, tokens):
    """The row cannot be written (its table is gone): the bytes written before are removed again."""
    with app.app_context():
        File.__table__.drop(db.engine)
    response = upload(client, tokens["owner"])
    assert response.status_code in (500, 503)
    assert stored_files(app) == []


def test_a_row_whose_bytes_are_gone_is_a_404_in_the_envelope(app, client, tokens):
    """A commit whose answer was lost keeps the bytes; if they go anyway (a disk lost), the download says so."""
    file_id = upload(client, tokens["owner"]).get_json()["data"]["id"]
    [stored] = stored_files(app)
    stored.unlink()
    response = client.get(f"/api/files/{file_id}/content", headers=bearer(tokens["owner"]))
    assert (response.status_code, response.get_json()["status"]) == (404, "NOT_FOUND")
    assert response.get_json()["message"] == "This file's content is missing."


def test_upload_token_without_qiniu_keys_is_501(client, tokens):
    response = client.get("/api/files/upload-token?filename=a.png", headers=bearer(tokens["owner"]))
    assert (response.status_code, response.get_json()["status"]) == (501, "STORAGE_NOT_CONFIGURED")


def test_deleting_a_user_deletes_their_files_and_bytes(app, client, tokens):
    upload(client, tokens["owner"]), upload(client, tokens["stranger"])
    with app.app_context():
        from app.models import User

        owner_id = db.session.scalar(db.select(User.id).where(User.phone == OWNER))
    assert client.delete(f"/api/users/{owner_id}", headers=bearer(tokens["admin"])).status_code == 204
    assert rows(app) == 1 and len(stored_files(app)) == 1


@pytest.mark.parametrize(("data", "field"), [
    ({"file": (io.BytesIO(b"plain text\n"), "a.txt"), "extra": "x"}, "extra"),
    ({"file": (io.BytesIO(b"plain text\n"), "a.txt"), "second": (io.BytesIO(b"more\n"), "b.txt")}, "second"),
    ({"": (io.BytesIO(b"plain text\n"), "a.txt")}, ""),
])
def test_a_part_the_upload_does_not_name_is_400_naming_it(app, client, tokens, data, field):
    response = client.post("/api/files/", data=data, headers=bearer(tokens["owner"]),
                           content_type="multipart/form-data")
    body = response.get_json()
    assert (response.status_code, body["status"], body["field"]) == (400, "INVALID_FIELD", field)
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert rows(app) == 0 and stored_files(app) == []


def test_two_parts_named_file_are_400_on_file_and_store_nothing(app, client, tokens):
    data = {"file": [(io.BytesIO(b"first\n"), "a.txt"), (io.BytesIO(b"second\n"), "b.txt")]}
    response = client.post("/api/files/", data=data, headers=bearer(tokens["owner"]),
                           content_type="multipart/form-data")
    body = response.get_json()
    assert (response.status_code, body["status"], body["field"]) == (400, "INVALID_FIELD", "file")
    assert rows(app) == 0 and stored_files(app) == []


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"])
def test_an_upload_sent_as_another_type_than_multipart_is_415(client, tokens, content_type):
    response = client.post("/api/files/", data=b'{"file": "x"}', headers=bearer(tokens["owner"]),
                           content_type=content_type)
    assert (response.status_code, response.get_json()["status"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
