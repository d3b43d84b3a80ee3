"""POST /api/common/sms/send and /verify: codes, cooldowns, caps, tries, gateways, tickets."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.errors import InvalidField
from app.extensions import db, redis_store
from app.models import User
from app.services import sms
from tests.fixtures.accounts import sms_outbox
from tests.support import free_port, wait_until

PHONE = "+8613800138000"
SEND = "/api/common/sms/send"
VERIFY = "/api/common/sms/verify"


@pytest.fixture
def app(make_accounts_app):
    return make_accounts_app()


def outbox(app) -> list[dict]:
    return sms_outbox(app)


def last_code(app) -> str:
    return outbox(app)[-1]["code"]


def send(client, phone="13800138000", purpose="register", **kwargs):
    return client.post(SEND, json={"phone": phone, "purpose": purpose}, **kwargs)


def verify(client, code, phone="13800138000", purpose="register"):
    return client.post(VERIFY, json={"phone": phone, "purpose": purpose, "code": code})


def add_user(app, phone=PHONE) -> None:
    with app.app_context():
        db.session.add(User(phone=phone, nickname="someone", password_hash="x"))
        db.session.commit()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_send_answers_expiry_and_resend_delay(client):
    response = send(client)
    assert response.status_code == 200
    assert response.get_json()["data"] == {"expires_in": 300, "resend_after": 60}


def test_file_gateway_writes_one_json_line_per_message(app, client):
    send(client)
    send(client, phone="+14155552671")
    lines = outbox(app)
    assert [line["to"] for line in lines] == [PHONE, "+14155552671"]
    first = lines[0]
    assert set(first) == {"to", "text", "code", "purpose", "sent_at"}
    assert first["purpose"] == "register"
    assert len(first["code"]) == 6 and first["code"].isdigit()
    assert first["code"] in first["text"]
    assert first["sent_at"].endswith("+00:00")


def test_codes_are_stored_hashed(app, client):
    send(client)
    with app.app_context():
        stored = redis_store.hgetall(sms.code_key(PHONE, "register"))
    assert last_code(app) not in json.dumps(stored)


def test_right_code_gives_a_ticket_and_is_used_up(app, client):
    send(client)
    code = last_code(app)
    response = verify(client, code)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["expires_in"] == 600
    assert len(data["sms_ticket"]) >= 32
    again = verify(client, code)
    assert again.status_code == 400
    assert again.get_json()["field"] == "code"


def test_wrong_code_is_400_on_the_code_field(app, client):
    send(client)
    response = verify(client, wrong(last_code(app)))
    assert response.status_code == 400
    assert (response.get_json()["status"], response.get_json()["field"]) == ("INVALID_FIELD", "code")


def test_code_for_another_purpose_or_phone_does_not_verify(app, client):
    send(client)
    code = last_code(app)
    assert verify(client, code, purpose="login").status_code == 400
    assert verify(client, code, phone="13900139000").status_code == 400
    assert verify(client, code).status_code == 200


def test_code_expires_after_its_ttl(make_accounts_app):
    app = make_accounts_app({"sms": {"code_ttl": 1}})
    client = app.test_client()
    send(client)
    with app.app_context():
        wait_until(lambda: not redis_store.exists(sms.code_key(PHONE, "register")), timeout=5)
    assert verify(client, last_code(app)).status_code == 400


def test_five_wrong_codes_void_the_code(app, client):
    send(client)
    code = last_code(app)
    for _ in range(5):
        assert verify(client, wrong(code)).status_code == 400
    response = verify(client, code)
    assert response.status_code == 400
    assert "request a new one" in response.get_json()["message"]


def test_resend_inside_the_cooldown_is_429_with_retry_after(client):
    assert send(client).status_code == 200
    response = send(client)
    assert response.status_code == 429
    assert response.get_json()["status"] == "TOO_MANY_REQUESTS"
    assert 55 <= int(response.headers["Retry-After"]) <= 60


def test_resend_after_the_cooldown_sends_a_new_code(make_accounts_app):
    app = make_accounts_app({"sms": {"resend_after": 1}})
    client = app.test_client()
    send(client)
    first = last_code(app)
    wait_until(lambda: send(client).status_code == 200, timeout=5, interval=0.2)
    newest = last_code(app)
    assert len(outbox(app)) == 2
    if newest != first:
        assert verify(client, first).status_code == 400  # only the newest code counts
    assert verify(client, newest).status_code == 200


def test_daily_cap_per_phone(make_accounts_app):
    client = make_accounts_app({"sms": {"resend_after": 0, "daily_cap_per_phone": 2}}).test_client()
    assert [send(client).status_code for _ in range(2)] == [200, 200]
    response = send(client)
    assert response.status_code == 429
    assert "phone" in response.get_json()["message"]
    assert int(response.headers["Retry-After"]) > 3600


def test_daily_cap_per_client_address(make_accounts_app):
    client = make_accounts_app({"sms": {"daily_cap_per_ip": 2}}).test_client()
    assert send(client, phone="13800138000").status_code == 200
    assert send(client, phone="13900139000").status_code == 200
    response = send(client, phone="13700137000")
    assert response.status_code == 429
    assert "address" in response.get_json()["message"]


def test_forged_x_forwarded_for_does_not_reset_the_address_cap(make_accounts_app):
    client = make_accounts_app({"sms": {"daily_cap_per_ip": 2}}).test_client()
    phones = ["13800138000", "13900139000", "13700137000", "13600136000"]
    codes = [send(client, phone=p, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i, p in enumerate(phones)]
    assert codes == [200, 200, 429, 429]


def test_x_forwarded_for_counts_behind_a_trusted_proxy(make_accounts_app):
    client = make_accounts_app({"sms": {"daily_cap_per_ip": 1}, "app": {"trusted_proxies": 1}}).test_client()
    first = send(client, phone="13800138000", headers={"X-Forwarded-For": "203.0.113.1"})
    second = send(client, phone="13900139000", headers={"X-Forwarded-For": "203.0.113.2"})
    third = send(client, phone="13700137000", headers={"X-Forwarded-For": "203.0.113.2"})
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)


def test_register_code_for_a_registered_phone_is_409(app, client):
    add_user(app)
    response = send(client)
    assert response.status_code == 409
    assert response.get_json()["field"] == "phone"


@pytest.mark.parametrize("purpose", ["login", "reset_password"])
def test_login_or_reset_code_for_an_unknown_phone_is_404(client, purpose):
    response = send(client, purpose=purpose)
    assert response.status_code == 404
    assert response.get_json()["field"] == "phone"


def test_login_code_for_a_registered_phone_is_sent(app, client):
    add_user(app)
    assert send(client, purpose="login").status_code == 200


def test_malformed_phone_is_400_on_phone(client):
    response = send(client, phone="12345")
    assert response.status_code == 400
    assert response.get_json()["field"] == "phone"


def test_unknown_purpose_is_400_on_purpose(client):
    response = send(client, purpose="shopping")
    assert response.status_code == 400
    assert response.get_json()["field"] == "purpose"


# --- the http gateway, against a local server that checks the signature ----------------------------


class Gateway(BaseHTTPRequestHandler):
    secret = b""
    status = 200
    received: list

    def do_POST(self):  # http.server calls it by this name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(self.headers.get("X-Signature", ""), expected):
            self.send_response(401)
        else:
            self.received.append(json.loads(body))
            self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway_server():
    handler = type("Handler", (Gateway,), {"secret": b"gateway-secret", "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/sms"
    server.shutdown()
    server.server_close()


def http_app(make_accounts_app, url, secret="gateway-secret"):
    return make_accounts_app({"sms": {"gateway": "http", "http": {"url": url, "secret": secret, "timeout": 2.0}}})


def test_http_gateway_posts_a_signed_message(make_accounts_app, gateway_server):
    handler, url = gateway_server
    client = http_app(make_accounts_app, url).test_client()
    assert send(client).status_code == 200
    [message] = handler.received
    assert (message["to"], message["purpose"]) == (PHONE, "register")
    assert verify(client, message["code"]).status_code == 200


def test_http_gateway_error_is_502_and_stores_nothing(make_accounts_app, gateway_server):
    handler, url = gateway_server
    handler.status = 500
    app = http_app(make_accounts_app, url)
    client = app.test_client()
    response = send(client)
    assert response.status_code == 502
    assert response.get_json()["status"] == "SMS_FAILED"
    [message] = handler.received
    with app.app_context():
        assert not redis_store.exists(sms.code_key(PHONE, "register"))
    assert verify(client, message["code"]).status_code == 400
    handler.status = 200
    assert send(client).status_code == 200  # a failed send costs no cooldown


def test_http_gateway_with_a_wrong_secret_is_refused_by_the_gateway(make_accounts_app, gateway_server):
    handler, url = gateway_server
    client = http_app(make_accounts_app, url, secret="not-the-secret").test_client()
    assert send(client).status_code == 502
    assert handler.received == []


def test_unreachable_http_gateway_is_502(make_accounts_app):
    client = http_app(make_accounts_app, f"http://127.0.0.1:{free_port()}/sms").test_client()
    assert send(client).status_code == 502


# --- tickets and consume_sms_proof, the service other endpoints call ----------------------------------


def code_then_ticket(app, client, purpose="register") -> str:
    send(client, purpose=purpose)
    return verify(client, last_code(app), purpose=purpose).get_json()["data"]["sms_ticket"]


def test_ticket_proves_the_phone_once(app, client):
    ticket = code_then_ticket(app, client)
    with app.app_context():
        sms.consume_sms_proof(PHONE, "register", ticket=ticket)
        with pytest.raises(InvalidField) as error:
            sms.consume_sms_proof(PHONE, "register", ticket=ticket)
    assert error.value.field == "sms_ticket"


def test_ticket_for_another_phone_or_purpose_is_refused_and_kept(app, client):
    ticket = code_then_ticket(app, client)
    with app.app_context():
        for phone, purpose in (("+8613900139000", "register"), (PHONE, "login")):
            with pytest.raises(InvalidField):
                sms.consume_sms_proof(phone, purpose, ticket=ticket)
        sms.consume_sms_proof(PHONE, "register", ticket=ticket)


def test_code_proves_the_phone_once(app, client):
    send(client)
    code = last_code(app)
    with app.app_context():
        sms.consume_sms_proof(PHONE, "register", code=code)
        with pytest.raises(InvalidField) as error:
            sms.consume_sms_proof(PHONE, "register", code=code)
    assert error.value.field == "sms_code"


def test_no_proof_is_invalid_on_sms_code(app):
    with app.app_context(), pytest.raises(InvalidField) as error:
        sms.consume_sms_proof(PHONE, "register")
    assert error.value.field == "sms_code"
