"""Messages, mails and SMS texts in en and zh-CN: Accept-Language chooses per request, app.locale by default;
code, status, field and the spec never change with the language."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from app.extensions import db
from app.i18n import CACHED_HEADERS, requested_tag, tag_of_header
from app.models import User
from app.negotiation import bounded
from tests.fixtures.accounts import login, sms_outbox
from tests.support import wait_until

PHONE, EMAIL = "+8613800138000", "me@example.com"
ZH = {"Accept-Language": "zh-CN"}
EN = {"Accept-Language": "en"}
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def app(make_accounts_app):
    return make_accounts_app()


def unknown_field(client, headers=None):
    return client.post("/api/common/sms/send", json={"phone": "13800138000", "purpose": "register", "color": 1},
                       headers=headers or {})


def test_an_error_is_written_in_the_language_asked_for_and_keeps_code_status_and_field(client):
    english, chinese, default = unknown_field(client, EN), unknown_field(client, ZH), unknown_field(client)
    for answer in (english, chinese, default):
        assert (answer.status_code, answer.get_json()["status"], answer.get_json()["field"]) == (
            400, "INVALID_FIELD", "color")
        assert answer.get_json()["code"] == 400
    assert english.get_json()["message"] == default.get_json()["message"] == "color is not a field of this operation."
    assert chinese.get_json()["message"] == "color 不是此操作的字段。"
    assert (english.headers["Content-Language"], chinese.headers["Content-Language"]) == ("en", "zh-CN")
    assert "Accept-Language" in chinese.headers["Vary"]


@pytest.mark.parametrize(("header", "language"), [
    ("zh", "zh-CN"), ("zh-cn", "zh-CN"), ("zh-Hans", "zh-CN"), ("zh-Hans-CN", "zh-CN"), ("zh_CN", "zh-CN"),
    ("en-US,en;q=0.9", "en"), ("fr-FR, zh-CN;q=0.5", "zh-CN"), ("en;q=0.4, zh;q=0.8", "zh-CN"),
    ("zh-TW", "en"), ("zh-Hant", "en"), ("fr", "en"), ("*", "en"), ("zh-CN;q=0", "en"), ("", "en"),
])
def test_accept_language_variants_choose_a_language_we_speak(client, header, language):
    answer = client.get("/api/no-such-route", headers={"Accept-Language": header})
    assert (answer.status_code, answer.get_json()["status"]) == (404, "NOT_FOUND")
    assert answer.headers["Content-Language"] == language
    assert answer.get_json()["message"] == {"en": "Not found.", "zh-CN": "未找到。"}[language]


def test_only_the_first_ranges_of_accept_language_are_read(client):
    """A header of thousands of ranges (a cheap way to make every request expensive) counts its first 20 only."""
    many = ", ".join(["fr;q=0.9"] * 19 + ["zh-CN;q=0.8"] + ["de;q=0.7"] * 30000)
    assert client.get("/api/no-such-route", headers={"Accept-Language": many}).headers["Content-Language"] == "zh-CN"
    late = ", ".join(["fr;q=0.9"] * 20 + ["zh-CN"])
    assert client.get("/api/no-such-route", headers={"Accept-Language": late}).headers["Content-Language"] == "en"


def test_a_huge_accept_or_accept_language_is_read_only_as_far_as_its_bounds(client):
    """Past 20 ranges or 1 KB the rest of Accept and Accept-Language is dropped before flask-restx or the language
    choice parse it (30,000 ranges, or one range of thousands of parameters, cost tens of ms a request)."""
    one_range = "zh-CN, fr" + ";x=1" * 15000
    answer = client.get("/api/health/live", headers={"Accept": ",".join(["x/y"] * 30000 + ["*/*"]),
                                                     "Accept-Language": one_range})
    assert answer.status_code == 200 and answer.headers["Content-Language"] == "zh-CN"
    assert bounded("a," * 30 + "b") == ",".join(["a"] * 20) and len(bounded("a" * 5000)) == 1024


def test_the_language_choice_remembers_a_bounded_number_of_headers_each_within_the_bound(app, client):
    """Each distinct Accept-Language is parsed once; at most CACHED_HEADERS are kept, and one longer than the
    1 KB bound (possible only where app.negotiation did not bound it) is read but never kept."""
    for n in range(CACHED_HEADERS + 10):
        answer = client.get("/api/no-such-route", headers={"Accept-Language": f"x-{n}, zh;q=0.5"})
        assert answer.headers["Content-Language"] == "zh-CN"
    assert tag_of_header.cache_info().currsize == CACHED_HEADERS
    kept = tag_of_header.cache_info()
    with app.test_request_context(headers={"Accept-Language": "fr;q=0.9, " * 200 + "zh"}):
        assert requested_tag() == "zh-CN"
    assert tag_of_header.cache_info() == kept


def test_framework_errors_are_translated_too(client):
    bad_json = client.post("/api/common/sms/send", data="{", content_type="application/json", headers=ZH)
    wrong_method = client.delete("/api/common/sms/send", headers=ZH)
    assert (bad_json.status_code, bad_json.get_json()["message"]) == (400, "请求体不是有效的 JSON。")
    assert (wrong_method.status_code, wrong_method.get_json()["message"]) == (405, "此处不允许使用该请求方法。")


def test_query_argument_errors_are_translated_without_the_english_help(app, client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    answer = client.get("/api/auth/events?per_page=500", headers={**ZH, "token": token})
    body = answer.get_json()
    assert (answer.status_code, body["field"]) == (400, "per_page")
    assert body["message"] == "per_page: 1 到 100 之间的整数"


def test_app_locale_zh_cn_is_the_default_and_accept_language_still_chooses(make_accounts_app):
    client = make_accounts_app({"app": {"locale": "zh-CN"}}).test_client()
    assert client.get("/api/no-such-route").get_json()["message"] == "未找到。"
    assert client.get("/api/no-such-route", headers=EN).get_json()["message"] == "Not found."
    assert client.get("/api/no-such-route", headers={"Accept-Language": "de"}).get_json()["message"] == "未找到。"


def test_outside_a_request_the_language_is_app_locale(make_accounts_app):
    app = make_accounts_app({"app": {"locale": "zh-CN"}})
    with app.app_context():
        assert requested_tag() == "zh-CN"


def test_success_messages_are_translated(client):
    assert client.get("/api/health/live", headers=ZH).get_json()["message"] == "成功"
    assert client.get("/api/health/live").get_json()["message"] == "OK"


def test_password_advice_from_zxcvbn_is_translated(app, client, make_user):
    make_user(PHONE)
    token = login(client, PHONE)["token"]
    answer = client.put("/api/auth/password", json={"old_password": "correct horse battery",
                                                     "new_password": "password123"}, headers={**ZH, "token": token})
    body = answer.get_json()
    assert (answer.status_code, body["field"]) == (400, "new_password")
    assert body["message"].startswith("new_password 太容易被猜到。") and "password" not in body["message"][12:]


def test_an_sms_is_written_in_the_language_of_the_request(app, client):
    assert client.post("/api/common/sms/send", json={"phone": "13800138000", "purpose": "register"},
                       headers=ZH).status_code == 200
    assert client.post("/api/common/sms/send", json={"phone": "13800138001", "purpose": "register"},
                       headers=EN).status_code == 200
    chinese, english = sms_outbox(app)
    assert chinese["text"] == f"您的验证码是 {chinese['code']}，5 分钟内有效。"
    assert english["text"] == f"Your verification code is {english['code']}. It expires in 5 minutes."
    assert chinese["purpose"] == english["purpose"] == "register"


def test_a_configured_sms_template_that_the_catalogue_lacks_is_sent_as_written(make_accounts_app):
    app = make_accounts_app({"sms": {"template": "【Acme】code {code}"}})
    client = app.test_client()
    assert client.post("/api/common/sms/send", json={"phone": "13800138000", "purpose": "register"},
                       headers=ZH).status_code == 200
    [message] = sms_outbox(app)
    assert message["text"] == f"【Acme】code {message['code']}"


@pytest.fixture
def mail_app(make_accounts_app, smtp):
    port, _ = smtp
    app = make_accounts_app({"mail": {"backend": "smtp", "server": "127.0.0.1", "port": port, "suppress": False}})
    with app.app_context():
        db.session.add(User(phone=PHONE, email=EMAIL, nickname="小明", password_hash="x"))
        db.session.commit()
    return app


def received(inbox, count):
    wait_until(lambda: len(inbox.messages) >= count, timeout=10)
    message = email.message_from_bytes(inbox.messages[count - 1].content, policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return str(message["Subject"]), text, html


def test_a_mail_is_written_in_the_language_of_the_request_though_a_worker_sends_it(mail_app, smtp):
    _, inbox = smtp
    client = mail_app.test_client()
    assert client.post("/api/auth/password/forgot", json={"email": EMAIL}, headers=ZH).status_code == 200
    subject, text, html = received(inbox, 1)
    code = re.search(r"\b(\d{6})\b", text).group(1)
    assert subject == "[flask-restx-starter] 您的密码重置验证码"
    assert text.startswith("小明，您好：") and "flask-restx-starter 账号的密码重置验证码是：" in text
    assert "分钟内有效" in html and code in html and "Hello" not in html + text


def test_a_mail_is_in_english_for_an_english_request_and_by_default(mail_app, smtp, redis_namespace):
    _, inbox = smtp
    client = mail_app.test_client()
    assert client.post("/api/auth/password/forgot", json={"email": EMAIL}).status_code == 200
    subject, text, html = received(inbox, 1)
    assert subject == "[flask-restx-starter] Your password reset code"
    assert text.startswith("Hello 小明,") and "It expires in" in text and "It expires in" in html
    assert not HAN.search(text.replace("小明", "")) and not HAN.search(html.replace("小明", ""))


def test_the_spec_stays_english_whatever_the_request_asks_for(make_accounts_app):
    chinese_first = make_accounts_app().test_client().get("/api/swagger.json", headers=ZH)  # a fresh app: built now
    english = make_accounts_app().test_client().get("/api/swagger.json", headers=EN)
    assert chinese_first.get_json() == english.get_json()
    assert "Content-Language" not in chinese_first.headers
    assert "Content-Language" not in make_accounts_app().test_client().get("/api/openapi.json", headers=ZH).headers
    spec = chinese_first.get_json()
    assert spec["paths"]["/common/sms/send"]["post"]["responses"]["400"]["description"].startswith("INVALID_FIELD")
    assert "Not found." not in str(spec) and "未找到" not in str(spec)
