"""Qiniu without the network: upload tokens decoded offline, signed callbacks, and server-side uploads
sent to a local HTTP endpoint that checks the token's signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import qiniu

from app.extensions import db
from app.models import File
from tests.fixtures.accounts import bearer, login
from tests.support import deep_merge

AK, SK, BUCKET = "test-access-key", "test-secret-key", "uploads"
PHONE = "+8613800138000"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 500


def signature_ok(token: str) -> bool:
    """Recompute the HMAC-SHA1 that Qiniu checks on an upload token."""
    access_key, sign, encoded = token.split(":")
    expected = base64.urlsafe_b64encode(hmac.new(SK.encode(), encoded.encode(), hashlib.sha1).digest()).decode()
    return access_key == AK and hmac.compare_digest(sign, expected)


class UploadHost(BaseHTTPRequestHandler):
    """Stands in for Qiniu's upload host: a multipart form with token, key and file."""

    received: list

    def do_POST(self):  # http.server calls it by this name
        from email.parser import BytesParser
        from email.policy import HTTP

        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
        fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                  for part in message.iter_parts()}
        token, key = fields["token"].decode(), fields["key"].decode()
        _, _, policy = qiniu.Auth.up_token_decode(token)
        ok = signature_ok(token) and policy["scope"] == f"{BUCKET}:{key}"
        self.received.append({"ok": ok, "key": key, "data": fields["file"]})
        answer = json.dumps({"key": key, "hash": "Fq"}).encode() if ok else b'{"error":"bad token"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def upload_host():
    handler = type("Handler", (UploadHost,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


QINIU = {"access_key": AK, "secret_key": SK, "bucket_name": BUCKET, "domain": "https://cdn.example.com",
         "callback_url": "https://api.example.com/api/files/qiniu/callback"}


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(deep_merge(accounts_settings, {"qiniu": QINIU}))


@pytest.fixture
def token(client, make_user):
    make_user(PHONE)
    return login(client, PHONE)["token"]


def test_upload_token_decodes_offline_to_the_expected_policy(app, client, token):
    started = int(time.time())
    response = client.get("/api/files/upload-token?filename=photo.png", headers=bearer(token))
    assert response.status_code == 200
    data = response.get_json()["data"]
    access_key, _, policy = qiniu.Auth.up_token_decode(data["token"])
    assert access_key == AK and signature_ok(data["token"])
    assert policy["scope"] == f"{BUCKET}:{data['key']}" and data["key"].endswith(".png")
    assert policy["fsizeLimit"] == 16 * 1024 * 1024
    assert "image/png" in policy["mimeLimit"].split(";")
    assert started + 3600 <= policy["deadline"] <= started + 3602
    assert policy["callbackUrl"] == QINIU["callback_url"]
    with app.app_context():
        from app.models import User

        user_id = db.session.scalar(db.select(User.id))
    assert f"user_id={user_id}" in policy["callbackBody"]
    assert data["upload_url"] == "https://up.qiniup.com" and data["expires_at"] >= started + 3600


def test_upload_token_for_a_type_not_allowed_is_415(client, token):
    assert client.get("/api/files/upload-token?filename=tool.exe", headers=bearer(token)).status_code == 415


def callback(client, body: str, authorization: str | None):
    headers = {"Authorization": authorization} if authorization else {}
    return client.post("/api/files/qiniu/callback", data=body, headers=headers,
                       content_type="application/x-www-form-urlencoded")


def signed(body: str) -> str:
    url = "http://localhost/api/files/qiniu/callback"
    return "QBox " + qiniu.Auth(AK, SK).token_of_request(url, body, "application/x-www-form-urlencoded")


def test_a_correctly_signed_callback_records_the_file(app, client, token):
    key = client.get("/api/files/upload-token?filename=photo.png", headers=bearer(token)).get_json()["data"]["key"]
    with app.app_context():
        from app.models import User

        user_id = db.session.scalar(db.select(User.id))
    body = f"user_id={user_id}&key={key}&size=1234&content_type=image%2Fpng&filename=photo.png"
    response = callback(client, body, signed(body))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert (data["backend"], data["size"], data["url"]) == ("qiniu", 1234, f"https://cdn.example.com/{key}")
    mine = client.get("/api/files/", headers=bearer(token)).get_json()["data"]["items"]
    assert [f["id"] for f in mine] == [data["id"]]


def test_an_altered_or_unsigned_callback_is_401(app, client, token):
    body = "key=k.png&size=1&content_type=image%2Fpng&filename=a.png&user_id=1"
    altered = body.replace("user_id=1", "user_id=2")
    assert callback(client, altered, signed(body)).status_code == 401
    assert callback(client, body, None).status_code == 401
    assert callback(client, body, "QBox test-access-key:forged").status_code == 401
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(File.id))) == 0


def upload_to_qiniu(make_app, accounts_settings, **qiniu):
    """Log in on an app whose files go to Qiniu (with ``qiniu`` settings) and upload a PNG; (app, token, response)."""
    from app.services.users import create_user

    app = make_app(deep_merge(accounts_settings, {"files": {"backend": "qiniu"}, "qiniu": {**QINIU, **qiniu}}))
    client = app.test_client()
    with app.app_context():
        create_user(PHONE, "correct horse battery", "n")
    token = login(client, PHONE)["token"]
    response = client.post("/api/files/", data={"file": (io.BytesIO(PNG), "photo.png")}, headers=bearer(token),
                           content_type="multipart/form-data")
    return app, token, response


def test_server_side_upload_sends_a_signed_request_to_the_upload_host(make_app, accounts_settings, upload_host):
    handler, host = upload_host
    app, token, response = upload_to_qiniu(make_app, accounts_settings, upload_host=host, private=True)
    client = app.test_client()
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    [received] = handler.received
    assert received["ok"] and received["data"] == PNG and received["key"].endswith(".png")
    assert data["backend"] == "qiniu" and data["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert data["url"].startswith(f"https://cdn.example.com/{received['key']}?e=") and "&token=" in data["url"]
    redirect = client.get(f"/api/files/{data['id']}/content", headers=bearer(token))
    assert redirect.status_code == 302 and redirect.headers["Location"].startswith("https://cdn.example.com/")


def test_server_side_upload_refused_by_the_host_stores_nothing(make_app, accounts_settings, upload_host):
    handler, host = upload_host
    app, _, response = upload_to_qiniu(make_app, accounts_settings, secret_key="wrong", upload_host=host)
    assert response.status_code == 503
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(File.id))) == 0


def issued(app, client, token) -> tuple[str, int]:
    """(key, user id) of an upload token issued to the logged-in user."""
    from app.models import User

    key = client.get("/api/files/upload-token?filename=photo.png", headers=bearer(token)).get_json()["data"]["key"]
    with app.app_context():
        return key, db.session.scalar(db.select(User.id))


def test_the_callback_body_puts_our_fields_before_the_clients_file_name(app, client, token):
    data = client.get("/api/files/upload-token?filename=photo.png", headers=bearer(token)).get_json()["data"]
    body = qiniu.Auth.up_token_decode(data["token"])[2]["callbackBody"]
    assert body.startswith("user_id=") and body.endswith("&filename=$(fname)")


@pytest.mark.parametrize(("fields", "field"), [
    ("key=../../etc/passwd&size=5&content_type=image%2Fpng", "key"),
    ("key={key}&size=-5&content_type=image%2Fpng", "size"),
    ("key={key}&size=99999999999&content_type=image%2Fpng", "size"),
    ("key={key}&size=5&content_type=text%2Fhtml", "content_type"),
    ("key={key}&size=5", "content_type"),
])
def test_a_signed_callback_with_a_field_we_never_issued_is_400(app, client, token, fields, field):
    key, user_id = issued(app, client, token)
    body = f"user_id={user_id}&" + fields.format(key=key) + "&filename=a.png"
    response = callback(client, body, signed(body))
    assert (response.status_code, response.get_json()["field"]) == (400, field)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(File.id))) == 0


def test_a_callback_for_a_key_issued_to_another_user_is_400(app, client, token, make_user):
    key, user_id = issued(app, client, token)
    other = make_user("+8613900139000")
    body = f"user_id={other}&key={key}&size=5&content_type=image%2Fpng&filename=a.png"
    response = callback(client, body, signed(body))
    assert (response.status_code, response.get_json()["field"]) == (400, "key")
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(File.id))) == 0


@pytest.mark.parametrize("smuggled", ["&user_id={other}", "&key={key}", "&size=1"])
def test_a_file_name_that_repeats_one_of_our_fields_is_400(app, client, token, make_user, smuggled):
    key, user_id = issued(app, client, token)
    other = make_user("+8613900139000")
    body = (f"user_id={user_id}&key={key}&size=5&content_type=image%2Fpng&filename=a.png"
            + smuggled.format(other=other, key=key))
    response = callback(client, body, signed(body))
    assert (response.status_code, response.get_json()["status"]) == (400, "INVALID_FIELD")
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(File.id))) == 0


def test_repeated_user_ids_are_refused_not_the_first_taken(app, client, token, make_user):
    key, user_id = issued(app, client, token)
    other = make_user("+8613900139000")
    body = f"user_id={other}&user_id={user_id}&key={key}&size=5&content_type=image%2Fpng&filename=a.png"
    response = callback(client, body, signed(body))
    assert (response.status_code, response.get_json()["field"]) == (400, "user_id")

