"""S3 direct uploads against a real S3-compatible server (moto_server): GET /api/files/upload-url, the client's form
POST to the store, and POST /api/files/s3/complete with its checks.

moto_server does not enforce a POST policy's conditions (it stores a form POST whatever its size and Content-Type
field), so what real S3 refuses up front is shown here in the policy itself, and the same upload is then caught
by /complete's check (HEAD and the first bytes), which deletes the object."""

from __future__ import annotations

import base64
import json
import re
import threading
import time

import pytest
import requests

from app.extensions import db, redis_store
from app.models import File
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge, timed

OWNER, STRANGER = "+8613800138000", "+8613900139000"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@pytest.fixture
def app(make_app, accounts_settings, s3_bucket):
    """Files stay on local disk: direct uploads need only the s3 settings, as Qiniu's need only its keys."""
    return make_app(deep_merge(accounts_settings, {"s3": s3_bucket.settings(upload_ttl=600)}))


@pytest.fixture
def tokens(client, make_user):
    make_user(OWNER), make_user(STRANGER)
    return {"owner": login(client, OWNER)["token"], "stranger": login(client, STRANGER)["token"]}


def upload_url(client, token, filename="photo.png", content_type="image/png", size=len(PNG)):
    return client.get("/api/files/upload-url", query_string={"filename": filename, "content_type": content_type,
                                                             "size": size}, headers=bearer(token))


def issued(client, token, **kwargs) -> dict:
    answer = upload_url(client, token, **kwargs)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["data"]


def post_form(form: dict, data: bytes, **field_changes) -> requests.Response:
    """What a browser does with the form: its fields, then the file, posted to the store."""
    fields = {**form["fields"], **field_changes}
    return requests.post(form["url"], data=fields, files={"file": ("photo.png", data)}, timeout=10)


def complete(client, token, key):
    return client.post("/api/files/s3/complete", json={"key": key}, headers=bearer(token))


def rows(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count(File.id)))


def test_upload_url_issues_a_policy_that_limits_key_size_type_and_time(app, client, tokens, s3_bucket):
    started = int(time.time())
    form = issued(client, tokens["owner"], filename="../../Holiday photo.png")
    key = form["key"]
    assert re.fullmatch(r"uploads/incoming/u1/[0-9a-f]{32}\.png", key), key
    assert form["url"] == f"{s3_bucket.server.url}/{s3_bucket.name}"
    assert started + 600 <= form["expires_at"] <= started + 601
    assert form["fields"]["key"] == key and form["fields"]["Content-Type"] == "image/png"
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": s3_bucket.name} in conditions and {"key": key} in conditions
    assert {"Content-Type": "image/png"} in conditions and ["content-length-range", 0, len(PNG)] in conditions
    assert form["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"


def test_a_direct_upload_is_recorded_after_the_check_and_completing_again_answers_the_same_file(
        app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"])
    assert post_form(form, PNG).status_code == 204
    answer = complete(client, tokens["owner"], form["key"])
    assert answer.status_code == 201, answer.get_json()
    data = answer.get_json()["data"]
    assert (data["backend"], data["size"], data["content_type"], data["filename"], data["sha256"]) == (
        "s3", len(PNG), "image/png", "photo.png", "")
    assert complete(client, tokens["owner"], form["key"]).get_json()["data"]["id"] == data["id"]
    final = form["key"].replace("incoming/", "", 1)
    assert s3_bucket.object_keys() == [final]  # moved where no form can write; the incoming object is gone
    location = client.get(f"/api/files/{data['id']}/content", headers=bearer(tokens["owner"])).headers["Location"]
    assert requests.get(location, timeout=10).content == PNG
    assert client.delete(f"/api/files/{data['id']}", headers=bearer(tokens["owner"])).status_code == 204
    assert s3_bucket.object_keys() == []


def test_a_file_larger_than_issued_is_413_at_completion_and_deleted(app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"], size=1000)
    assert post_form(form, PNG).status_code == 204  # moto: accepted despite content-length-range (S3 refuses)
    answer = complete(client, tokens["owner"], form["key"])
    assert (answer.status_code, answer.get_json()["status"]) == (413, "PAYLOAD_TOO_LARGE")
    assert s3_bucket.object_keys() == [] and rows(app) == 0
    assert complete(client, tokens["owner"], form["key"]).status_code == 400  # the pending upload is gone too


def test_a_type_field_other_than_issued_is_415_at_completion_and_deleted(app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"])
    assert post_form(form, PNG, **{"Content-Type": "text/html"}).status_code == 204  # moto: accepted; S3 refuses
    answer = complete(client, tokens["owner"], form["key"])
    assert (answer.status_code, answer.get_json()["status"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert s3_bucket.object_keys() == [] and rows(app) == 0


def test_bytes_of_another_type_than_issued_are_415_at_completion_and_deleted(app, client, tokens, s3_bucket):
    """No policy can see the content: an executable sent under the issued PNG type passes S3 too."""
    form = issued(client, tokens["owner"], size=2000)
    assert post_form(form, b"MZ\x90\x00" + bytes(1000)).status_code == 204
    answer = complete(client, tokens["owner"], form["key"])
    assert answer.status_code == 415 and s3_bucket.object_keys() == [] and rows(app) == 0


def test_completing_another_users_key_is_400_and_leaves_it_theirs(app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"])
    post_form(form, PNG)
    answer = complete(client, tokens["stranger"], form["key"])
    assert (answer.status_code, answer.get_json()["status"], answer.get_json()["field"]) == (
        400, "INVALID_FIELD", "key")
    assert s3_bucket.object_keys() == [form["key"]] and rows(app) == 0
    assert complete(client, tokens["owner"], form["key"]).status_code == 201


@pytest.mark.parametrize("key", ["u1/" + "0" * 32 + ".png", "../etc/passwd", "x" * 128])
def test_completing_a_key_never_issued_is_400_on_key(client, tokens, key):
    answer = complete(client, tokens["owner"], key)
    assert (answer.status_code, answer.get_json()["field"]) == (400, "key")


def test_completing_before_the_upload_is_400_and_the_upload_can_still_complete(app, client, tokens):
    form = issued(client, tokens["owner"])
    early = complete(client, tokens["owner"], form["key"])
    assert (early.status_code, early.get_json()["field"]) == (400, "key")
    post_form(form, PNG)
    assert complete(client, tokens["owner"], form["key"]).status_code == 201


def test_a_row_that_cannot_commit_keeps_the_upload_so_the_retry_completes(app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"])
    post_form(form, PNG)
    with app.app_context():
        File.__table__.drop(db.engine)
    assert complete(client, tokens["owner"], form["key"]).status_code in (500, 503)
    assert s3_bucket.object_keys() == [form["key"]]  # the copy is undone, the upload kept
    with app.app_context():
        File.__table__.create(db.engine)
    assert complete(client, tokens["owner"], form["key"]).status_code == 201


def test_a_form_posted_again_after_completion_changes_nothing_served(app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"], size=20000)
    post_form(form, PNG)
    data = complete(client, tokens["owner"], form["key"]).get_json()["data"]
    assert post_form(form, b"<html><script>alert(1)</script>").status_code == 204  # the policy still holds
    again = complete(client, tokens["owner"], form["key"])
    assert (again.status_code, again.get_json()["data"]["id"], again.get_json()["data"]["size"]) == (
        201, data["id"], len(PNG))
    location = client.get(f"/api/files/{data['id']}/content", headers=bearer(tokens["owner"])).headers["Location"]
    assert requests.get(location, timeout=10).content == PNG


def test_headers_a_lax_store_kept_from_the_form_are_not_carried_to_the_recorded_file(app, client, tokens, s3_bucket):
    form = issued(client, tokens["owner"])
    extra = {"Content-Disposition": "inline", "x-amz-website-redirect-location": "https://evil.example/"}
    assert post_form(form, PNG, **extra).status_code == 204  # moto stores fields the policy does not name
    assert s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=form["key"])["ContentDisposition"] == "inline"
    assert complete(client, tokens["owner"], form["key"]).status_code == 201
    [final] = s3_bucket.object_keys()
    stored = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=final)
    assert "ContentDisposition" not in stored and "WebsiteRedirectLocation" not in stored
    assert stored["ContentType"] == "image/png"


def test_what_is_checked_and_recorded_is_the_copy_served_even_while_the_form_is_posted_again(
        app, client, tokens, s3_bucket):
    """The form stays valid until it expires: bytes it posts while /complete runs never reach the final key
    unchecked, and the recorded size is the served object's."""
    html = b"<html><script>alert(1)</script>" + b" " * 60
    for _ in range(15):
        form = issued(client, tokens["owner"])
        assert post_form(form, PNG).status_code == 204
        stop = threading.Event()

        def post_again(form: dict = form, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                post_form(form, html), post_form(form, PNG)

        posters = [threading.Thread(target=post_again) for _ in range(2)]
        for poster in posters:
            poster.start()
        answer = complete(client, tokens["owner"], form["key"])
        stop.set()
        for poster in posters:
            poster.join()
        # 503: moto may answer 500 to a HEAD of an object it is rewriting; nothing unchecked is left then either
        assert answer.status_code in (201, 415, 503), answer.get_json()
        final_key = form["key"].replace("incoming/", "", 1)
        if answer.status_code == 201:
            final = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=final_key)["Body"].read()
            assert final == PNG and answer.get_json()["data"]["size"] == len(final)
        else:
            assert final_key not in s3_bucket.object_keys()


def test_completing_a_recorded_upload_whose_record_was_kept_answers_it_and_keeps_its_bytes(
        app, client, tokens, s3_bucket):
    """As after a commit whose answer was lost: the pending record stays, and the form posts other bytes."""
    form = issued(client, tokens["owner"])
    post_form(form, PNG)
    with app.app_context():
        pending = redis_store.key("files", "s3_pending", "1", form["key"])
        record = redis_store.get(pending)
    data = complete(client, tokens["owner"], form["key"]).get_json()["data"]
    with app.app_context():
        redis_store.set(pending, record, ex=600)
    final = form["key"].replace("incoming/", "", 1)
    for body in (b"<html><script>alert(1)</script>", PNG):
        assert post_form(form, body).status_code == 204
        again = complete(client, tokens["owner"], form["key"])
        assert (again.status_code, again.get_json()["data"]["id"]) == (201, data["id"])
        assert s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=final)["Body"].read() == PNG
    assert rows(app) == 1


def test_a_row_already_holding_the_final_key_is_409_and_its_bytes_stay(app, client, tokens, s3_bucket):
    """The unique key refuses a second row for the key; that refusal never deletes the bytes the row names."""
    form = issued(client, tokens["owner"])
    post_form(form, PNG)
    final = form["key"].replace("incoming/", "", 1)
    with app.app_context():  # a row for that key that is not the caller's (as no completion of theirs can find)
        db.session.add(File(owner_id=2, key=final, filename="p.png", size=len(PNG), content_type="image/png",
                            sha256="", backend="s3"))
        db.session.commit()
    answer = complete(client, tokens["owner"], form["key"])
    assert (answer.status_code, answer.get_json()["status"]) == (409, "CONFLICT")
    assert final in s3_bucket.object_keys() and rows(app) == 1


def test_concurrent_completions_record_one_file_and_never_answer_400(app, client, tokens, s3_bucket):
    for _ in range(3):
        form = issued(client, tokens["owner"])
        post_form(form, PNG)
        answers: list = []
        threads = [threading.Thread(target=lambda: answers.append(complete(app.test_client(), tokens["owner"],
                                                                            form["key"])))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {201, 409} and 201 in statuses, statuses
        assert len({answer.get_json()["data"]["id"] for answer in answers if answer.status_code == 201}) == 1
        conflict = next((answer for answer in answers if answer.status_code == 409), None)
        assert conflict is None or conflict.get_json()["status"] == "CONFLICT"
        assert complete(client, tokens["owner"], form["key"]).status_code == 201


def test_pending_direct_uploads_per_user_are_capped_with_429(make_app, accounts_settings, s3_bucket, make_user):
    app = make_app(deep_merge(accounts_settings, {"s3": s3_bucket.settings(max_pending=3)}))
    client = app.test_client()
    make_user(OWNER), make_user(STRANGER)
    owner, stranger = login(client, OWNER)["token"], login(client, STRANGER)["token"]
    forms = [issued(client, owner) for _ in range(3)]
    refused = upload_url(client, owner)
    assert (refused.status_code, refused.get_json()["status"]) == (429, "TOO_MANY_REQUESTS")
    assert 3600 < int(refused.headers["Retry-After"]) <= 3600 + 900  # till the oldest record ends
    assert upload_url(client, stranger).status_code == 200  # per user
    post_form(forms[0], PNG)
    assert complete(client, owner, forms[0]["key"]).status_code == 201  # a completed upload frees its place
    assert upload_url(client, owner).status_code == 200
    assert upload_url(client, owner).status_code == 429


@pytest.mark.parametrize(("query", "status", "field"), [
    ({"filename": "a.png", "content_type": "image/png"}, 400, "size"),
    ({"filename": "a.png", "size": 10}, 400, "content_type"),
    ({"content_type": "image/png", "size": 10}, 400, "filename"),
    ({"filename": "a.png", "content_type": "image/png", "size": -1}, 400, "size"),
    ({"filename": "a" * 256, "content_type": "image/png", "size": 10}, 400, "filename"),
    ({"filename": "a.png", "content_type": "image/png", "size": 16 * 1024 * 1024 + 1}, 413, None),
    ({"filename": "a.html", "content_type": "text/html", "size": 10}, 415, None),
    ({"filename": "a.pdf", "content_type": "image/png", "size": 10}, 415, None),
])
def test_upload_url_refuses_what_could_never_be_completed(client, tokens, query, status, field):
    answer = client.get("/api/files/upload-url", query_string=query, headers=bearer(tokens["owner"]))
    assert (answer.status_code, answer.get_json().get("field")) == (status, field)


def test_complete_takes_only_a_key(client, tokens):
    answer = client.post("/api/files/s3/complete", json={"key": "k", "size": 5}, headers=bearer(tokens["owner"]))
    assert (answer.status_code, answer.get_json()["field"]) == (400, "size")
    assert client.post("/api/files/s3/complete", json={"key": "k"}).status_code == 401


def test_completing_while_the_store_is_unreachable_is_503_and_can_be_retried(
        make_app, accounts_settings, s3_bucket, start_s3_server):
    server = start_s3_server()
    server.client().create_bucket(Bucket=s3_bucket.name)
    app = make_app(deep_merge(accounts_settings, {"s3": s3_bucket.settings(endpoint_url=server.url)}))
    client = app.test_client()
    with app.app_context():
        from app.services.users import create_user

        create_user(OWNER, "correct horse battery", "owner")
    token = login(client, OWNER)["token"]
    form = issued(client, token)
    post_form(form, PNG)
    server.stop()
    answer, seconds = timed(complete, client, token, form["key"])
    assert answer.status_code == 503 and seconds < 2
    assert complete(client, token, form["key"]).status_code == 503  # still pending: not taken for unknown (400)
