"""/api/files on the s3 backend against a real S3-compatible server (moto_server over HTTP): server uploads in one
PUT or in parts, presigned, proxied and public downloads, deletion, and a store that cannot be reached."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from app.extensions import db
from app.models import File
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge, free_port, timed

OWNER, STRANGER = "+8613800138000", "+8613900139000"
MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF_HEAD = b"%PDF-1.7\n"


@pytest.fixture
def s3_app(make_app, accounts_settings, s3_bucket):
    """``s3_app(**s3_overrides)``: an app whose files go to this test's bucket, with the owner signed in."""

    def factory(files=None, **s3):
        app = make_app(deep_merge(accounts_settings, {"files": {"backend": "s3", **(files or {})},
                                                      "s3": s3_bucket.settings(**s3)}))
        client = app.test_client()
        from app.services.users import create_user

        with app.app_context():
            create_user(OWNER, "correct horse battery", "owner")
        return app, client, login(client, OWNER)["token"]

    return factory


def upload(client, token, data=PNG, name="picture.png"):
    return client.post("/api/files/", data={"file": (io.BytesIO(data), name)}, headers=bearer(token),
                       content_type="multipart/form-data")


def rows(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(File.id)))


def key_of(app, file_id: int) -> str:
    with app.app_context():
        return db.session.get(File, file_id).key


def test_a_small_upload_is_one_put_of_the_bytes_with_their_type(s3_app, s3_bucket):
    app, client, token = s3_app()
    response = upload(client, token)
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert (data["backend"], data["size"], data["sha256"]) == ("s3", len(PNG), hashlib.sha256(PNG).hexdigest())
    key = key_of(app, data["id"])
    assert s3_bucket.object_keys() == [key] and "picture" not in key
    stored = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)
    assert stored["Body"].read() == PNG and stored["ContentType"] == "image/png"
    assert "-" not in stored["ETag"]  # a multipart object's ETag is "<md5 of the parts' md5s>-<parts>"


def test_an_upload_above_the_threshold_goes_in_parts_of_that_size(s3_app, s3_bucket):
    app, client, token = s3_app(multipart_threshold=5 * MiB)
    data = PDF_HEAD + os.urandom(11 * MiB)
    response = upload(client, token, data, "big.pdf")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["data"]["sha256"] == hashlib.sha256(data).hexdigest()
    key = key_of(app, response.get_json()["data"]["id"])
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == len(data)
    first = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key, PartNumber=1)
    assert first["ContentLength"] == 5 * MiB
    assert s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read() == data


def test_a_file_of_exactly_the_threshold_is_one_put(s3_app, s3_bucket):
    app, client, token = s3_app(multipart_threshold=5 * MiB)
    response = upload(client, token, PDF_HEAD + b"x" * (5 * MiB - len(PDF_HEAD)), "edge.pdf")
    key = key_of(app, response.get_json()["data"]["id"])
    assert "-" not in s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)["ETag"]


def test_an_upload_over_the_limit_midway_through_its_parts_is_413_and_leaves_no_object_or_part(s3_app, s3_bucket):
    app, client, token = s3_app(files={"max_size": 7 * MiB}, multipart_threshold=5 * MiB)
    response = upload(client, token, PDF_HEAD + os.urandom(8 * MiB), "big.pdf")
    assert (response.status_code, response.get_json()["status"]) == (413, "PAYLOAD_TOO_LARGE")
    assert s3_bucket.object_keys() == [] and rows(app) == 0
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []


def test_a_disallowed_type_is_415_and_sends_nothing(s3_app, s3_bucket):
    app, client, token = s3_app()
    response = upload(client, token, b"MZ\x90\x00" + bytes(200), "tool.exe")
    assert response.status_code == 415 and s3_bucket.object_keys() == [] and rows(app) == 0


def test_a_row_that_cannot_commit_leaves_no_object(s3_app, s3_bucket):
    app, client, token = s3_app()
    with app.app_context():
        File.__table__.drop(db.engine)
    assert upload(client, token).status_code in (500, 503)
    assert s3_bucket.object_keys() == []


def test_the_download_is_a_302_to_a_presigned_get_naming_the_file(s3_app, s3_bucket):
    app, client, token = s3_app(download_ttl=120)
    file_id = upload(client, token, name="Лето 2024.png").get_json()["data"]["id"]
    meta = client.get(f"/api/files/{file_id}", headers=bearer(token)).get_json()["data"]
    assert meta["url"].endswith(f"/api/files/{file_id}/content")  # no signed URL is kept in the metadata
    answer = client.get(f"/api/files/{file_id}/content", headers=bearer(token))
    assert answer.status_code == 302
    location = answer.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{s3_bucket.server.url}/{s3_bucket.name}/{key_of(app, file_id)}?")
    assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    fetched = requests.get(location, timeout=10)
    assert fetched.status_code == 200 and fetched.content == PNG
    assert fetched.headers["Content-Type"] == "image/png"
    disposition = fetched.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''%D0%9B%D0%B5%D1%82%D0%BE%202024.png" in disposition
    ranged = requests.get(location, headers={"Range": "bytes=8-15"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == PNG[8:16]


def test_proxied_downloads_stream_the_bytes_with_ranges_and_etags(s3_app):
    app, client, token = s3_app(proxy_downloads=True)
    meta = upload(client, token).get_json()["data"]
    url, headers = f"/api/files/{meta['id']}/content", bearer(token)
    whole = client.get(url, headers=headers)
    assert whole.status_code == 200 and whole.data == PNG
    assert (whole.headers["Content-Type"], whole.headers["Content-Length"]) == ("image/png", str(len(PNG)))
    assert whole.headers["Content-Disposition"] == "attachment; filename=picture.png"
    assert whole.headers["ETag"] == f'"{meta["sha256"]}"'
    part = client.get(url, headers={**headers, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == PNG[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(PNG)}"
    tail = client.get(url, headers={**headers, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == PNG[-10:]
    outside = client.get(url, headers={**headers, "Range": f"bytes={len(PNG)}-"})
    assert (outside.status_code, outside.headers["Content-Range"]) == (416, f"bytes */{len(PNG)}")
    assert client.get(url, headers={**headers, "Range": "bytes=0-1,5-6"}).data == PNG  # several ranges: ignored
    assert client.get(url, headers={**headers, "If-None-Match": whole.headers["ETag"]}).status_code == 304


def test_a_proxied_file_whose_object_is_gone_is_a_404(s3_app, s3_bucket):
    app, client, token = s3_app(proxy_downloads=True)
    file_id = upload(client, token).get_json()["data"]["id"]
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=key_of(app, file_id))
    answer = client.get(f"/api/files/{file_id}/content", headers=bearer(token))
    assert (answer.status_code, answer.get_json()["message"]) == (404, "This file's content is missing.")


def test_with_a_public_url_files_point_there(s3_app):
    app, client, token = s3_app(public_url="https://cdn.example.com/files/")
    data = upload(client, token).get_json()["data"]
    key = key_of(app, data["id"])
    assert data["url"] == f"https://cdn.example.com/files/{key}"
    answer = client.get(f"/api/files/{data['id']}/content", headers=bearer(token))
    assert (answer.status_code, answer.headers["Location"]) == (302, data["url"])


def test_delete_removes_the_row_and_the_object(s3_app, s3_bucket):
    app, client, token = s3_app()
    file_id = upload(client, token).get_json()["data"]["id"]
    assert len(s3_bucket.object_keys()) == 1
    assert client.delete(f"/api/files/{file_id}", headers=bearer(token)).status_code == 204
    assert s3_bucket.object_keys() == [] and rows(app) == 0


def test_without_a_bucket_uploads_and_direct_uploads_are_501(make_app, accounts_settings):
    app = make_app(deep_merge(accounts_settings, {"files": {"backend": "s3"}}))
    client = app.test_client()
    from app.services.users import create_user

    with app.app_context():
        create_user(OWNER, "correct horse battery", "owner")
    token = login(client, OWNER)["token"]
    answers = [upload(client, token),
               client.get("/api/files/upload-url?filename=a.png&content_type=image/png&size=10",
                          headers=bearer(token)),
               client.post("/api/files/s3/complete", json={"key": "u1/" + "a" * 32 + ".png"}, headers=bearer(token))]
    for answer in answers:
        assert (answer.status_code, answer.get_json()["status"]) == (501, "STORAGE_NOT_CONFIGURED")
    assert rows(app) == 0


def test_a_store_on_a_closed_port_is_503_within_2_seconds(s3_app):
    closed = f"http://127.0.0.1:{free_port()}"
    app, client, token = s3_app(endpoint_url=closed, proxy_downloads=True)
    answer, seconds = timed(lambda: upload(client, token))
    assert (answer.status_code, answer.get_json()["status"]) == (503, "SERVICE_UNAVAILABLE")
    assert seconds < 2 and rows(app) == 0


def test_a_stopped_store_is_503_within_2_seconds_and_a_delete_still_removes_the_row(
        s3_app, s3_bucket, start_s3_server):
    server = start_s3_server()
    server.client().create_bucket(Bucket=s3_bucket.name)
    app, client, token = s3_app(endpoint_url=server.url, proxy_downloads=True)
    file_id = upload(client, token).get_json()["data"]["id"]
    server.stop()
    for call in (lambda: client.get(f"/api/files/{file_id}/content", headers=bearer(token)),
                 lambda: upload(client, token)):
        answer, seconds = timed(call)
        assert answer.status_code == 503 and seconds < 2, answer.get_json()
    answer, seconds = timed(lambda: client.delete(f"/api/files/{file_id}", headers=bearer(token)))
    assert answer.status_code == 204 and seconds < 2  # the object is left for prune-files (logged)
    assert rows(app) == 0


def test_a_store_that_accepts_and_never_answers_is_503_within_2_seconds(s3_app, s3_bucket, tcp_relay):
    relay = tcp_relay("127.0.0.1", s3_bucket.server.port)
    app, client, token = s3_app(endpoint_url=f"http://127.0.0.1:{relay.port}", proxy_downloads=True)
    file_id = upload(client, token).get_json()["data"]["id"]
    relay.freeze()
    answer, seconds = timed(lambda: client.get(f"/api/files/{file_id}/content", headers=bearer(token)))
    assert answer.status_code == 503 and seconds < 2, answer.get_json()
    answer, seconds = timed(lambda: upload(client, token))  # no 1 s wait for "100 Continue" before the body
    assert answer.status_code == 503 and seconds < 2, answer.get_json()
    assert rows(app) == 1


def test_while_every_place_waits_on_a_hung_store_another_call_is_503_after_a_short_wait(
        make_app, accounts_settings, s3_bucket, tcp_relay):
    relay = tcp_relay("127.0.0.1", s3_bucket.server.port)
    app = make_app(deep_merge(accounts_settings, {
        "server": {"threads": 2}, "files": {"backend": "s3"},
        "s3": s3_bucket.settings(endpoint_url=f"http://127.0.0.1:{relay.port}", proxy_downloads=True)}))
    from app.services.users import create_user

    with app.app_context():
        create_user(OWNER, "correct horse battery", "owner")
    token = login(app.test_client(), OWNER)["token"]
    file_id = upload(app.test_client(), token).get_json()["data"]["id"]
    relay.freeze()
    answers: list = []

    def download() -> None:
        answers.append(timed(lambda: app.test_client().get(f"/api/files/{file_id}/content", headers=bearer(token))))

    threads = [threading.Thread(target=download) for _ in range(2)]  # server.threads 2: one place for the store
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = sorted((answer.get_json()["message"], seconds) for answer, seconds in answers)
    assert [answer.status_code for answer, _ in answers] == [503, 503]
    assert messages[0][0] == "Cloud storage did not answer." and messages[1][0].startswith("Cloud storage is busy")
    assert messages[1][1] < 1.4  # s3.connect_timeout (1 s) waited for a place, not the 1.5 s read timeout


def test_a_proxied_download_is_framed_by_the_stored_object_not_the_row(s3_app, s3_bucket):
    app, client, token = s3_app(proxy_downloads=True)
    file_id = upload(client, token).get_json()["data"]["id"]
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key_of(app, file_id), Body=PNG[:100])  # replaced
    whole = client.get(f"/api/files/{file_id}/content", headers=bearer(token))
    assert (whole.status_code, whole.headers["Content-Length"], whole.data) == (200, "100", PNG[:100])


def test_a_proxied_download_stops_at_the_stream_deadline(s3_app):
    app, client, token = s3_app(proxy_downloads=True, stream_deadline=0.001)
    data = PDF_HEAD + bytes(4 * MiB)
    file_id = upload(client, token, data, "big.pdf").get_json()["data"]["id"]
    answer = client.get(f"/api/files/{file_id}/content", headers=bearer(token))
    assert answer.headers["Content-Length"] == str(len(data)) and 0 < len(answer.data) < len(data)
