"""Email through a real SMTP server (aiosmtpd): the forgot/reset flow, welcome mail, ERROR mails."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from probe_api import PROBE

from app.extensions import db
from app.models import User
from tests.fixtures.accounts import send_sms_code
from tests.support import deep_merge, wait_until

EMAIL, PHONE, PASSWORD = "me@example.com", "+8613800138000", "correct horse battery"


@pytest.fixture
def app(make_app, accounts_settings, smtp):
    port, _ = smtp
    return make_app(deep_merge(accounts_settings, {
        "mail": {"server": "127.0.0.1", "port": port, "suppress": False, "admins": ["ops@example.com"]},
    }), extra_namespaces=[PROBE])


@pytest.fixture
def user(app):
    from app.services.users import create_user

    with app.app_context():
        return create_user(PHONE, PASSWORD, "小明", EMAIL).id


def text_of(envelope) -> str:
    import email

    message = email.message_from_bytes(envelope.content)
    parts = [p for p in message.walk() if p.get_content_type() == "text/plain"]
    return parts[0].get_payload(decode=True).decode()


def test_forgot_password_mails_a_code_that_resets_once(app, client, user, smtp):
    _, inbox = smtp
    assert client.post("/api/auth/password/forgot", json={"email": "ME@example.com"}).status_code == 200
    wait_until(lambda: inbox.messages, timeout=10)
    [mail] = inbox.messages
    assert mail.rcpt_tos == [EMAIL]
    code = re.search(r"\b(\d{6})\b", text_of(mail)).group(1)
    body = {"email": EMAIL, "email_code": code, "new_password": "a brand new secret"}
    assert client.post("/api/auth/password/reset", json=body).status_code == 200
    assert client.post("/api/auth/login", json={"account": EMAIL, "password": "a brand new secret"}).status_code == 200
    again = client.post("/api/auth/password/reset", json={**body, "new_password": "yet another secret"})
    assert (again.status_code, again.get_json()["field"]) == (400, "email_code")


def test_forgot_password_for_an_unknown_email_answers_the_same_and_mails_nothing(app, client, user, smtp):
    _, inbox = smtp
    known = client.post("/api/auth/password/forgot", json={"email": EMAIL})
    unknown = client.post("/api/auth/password/forgot", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.get_json()["message"] == unknown.get_json()["message"]
    wait_until(lambda: inbox.messages, timeout=10)
    app.extensions["tasks"].drain(5)
    assert [m.rcpt_tos for m in inbox.messages] == [[EMAIL]]


def test_wrong_email_codes_void_the_code(app, client, user, smtp):
    _, inbox = smtp
    client.post("/api/auth/password/forgot", json={"email": EMAIL})
    wait_until(lambda: inbox.messages, timeout=10)
    code = re.search(r"\b(\d{6})\b", text_of(inbox.messages[0])).group(1)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    body = {"email": EMAIL, "new_password": "a brand new secret"}
    for _ in range(5):
        assert client.post("/api/auth/password/reset", json={**body, "email_code": wrong}).status_code == 400
    assert client.post("/api/auth/password/reset", json={**body, "email_code": code}).status_code == 400


def test_registration_with_an_email_sends_a_welcome_mail(app, client, smtp):
    _, inbox = smtp
    code = send_sms_code(client, app, PHONE, "register")
    response = client.post("/api/auth/register", json={"phone": PHONE, "password": PASSWORD, "nickname": "小明",
                                                       "sms_code": code, "email": EMAIL})
    assert response.status_code == 201
    wait_until(lambda: inbox.messages, timeout=10)
    assert "Welcome" in text_of(inbox.messages[0])


def test_an_unhandled_exception_sends_one_error_mail(make_app, accounts_settings, smtp):
    port, inbox = smtp
    app = make_app(deep_merge(accounts_settings, {
        "log": {"mail_errors": True},
        "mail": {"server": "127.0.0.1", "port": port, "admins": ["ops@example.com"]},
    }), extra_namespaces=[PROBE])
    response = app.test_client().get("/api/probe/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    wait_until(lambda: inbox.messages, timeout=10)
    assert len(inbox.messages) == 1
    assert inbox.messages[0].rcpt_tos == ["ops@example.com"]
    content = inbox.messages[0].content.decode()
    assert "boom-1" in content and "unhandled exception" in content


def test_deactivated_account_gets_no_reset_mail(app, client, user, smtp):
    _, inbox = smtp
    with app.app_context():
        db.session.get(User, user).is_active = False
        db.session.commit()
    assert client.post("/api/auth/password/forgot", json={"email": EMAIL}).status_code == 200
    app.extensions["tasks"].drain(5)
    assert inbox.messages == []


# --- mail.debug and mail.backend --------------------------------------------------------------------------


@pytest.mark.parametrize(("debug", "printed"), [(False, False), (True, True)])
def test_the_smtp_conversation_is_printed_only_when_mail_debug_is_on(make_app, accounts_settings, smtp, debug,
                                                                     printed):
    """With app.debug on (the development server) Flask-Mail would print it, reset code included."""
    port, inbox = smtp
    app = make_app(deep_merge(accounts_settings, {
        "app": {"debug": True}, "mail": {"server": "127.0.0.1", "port": port, "suppress": False, "debug": debug},
    }))
    with app.app_context():
        from app.services.users import create_user

        create_user(PHONE, PASSWORD, "小明", EMAIL)
    with contextlib.redirect_stderr(io.StringIO()) as stderr:  # where smtplib prints, from the mail task's thread
        assert app.test_client().post("/api/auth/password/forgot", json={"email": EMAIL}).status_code == 200
        wait_until(lambda: inbox.messages, timeout=10)
        app.extensions["tasks"].drain(5)
    code = re.search(r"\b(\d{6})\b", text_of(inbox.messages[0])).group(1)
    err = stderr.getvalue()
    assert ("send: " in err and "reply: " in err) is printed
    assert (code in err) is printed


@pytest.fixture
def console_app(make_app, accounts_settings, smtp):
    """mail.backend console, with a real SMTP server that must receive nothing."""
    port, _ = smtp
    return make_app(deep_merge(accounts_settings, {
        "mail": {"backend": "console", "server": "127.0.0.1", "port": port, "suppress": False},
    }))


def mail_lines(app, caplog) -> list[str]:
    app.extensions["tasks"].drain(5)
    return [r.getMessage() for r in caplog.records if r.name == "app.services.mail" and "mail to " in r.getMessage()]


def test_the_console_backend_logs_a_registration_mail_instead_of_sending_it(console_app, smtp, caplog):
    caplog.set_level("INFO", logger="app.services.mail")
    client = console_app.test_client()
    code = send_sms_code(client, console_app, PHONE, "register")
    response = client.post("/api/auth/register", json={"phone": PHONE, "password": PASSWORD, "nickname": "小明",
                                                       "sms_code": code, "email": EMAIL})
    assert response.status_code == 201
    [line] = mail_lines(console_app, caplog)
    assert line.startswith(f"mail to {EMAIL}: [") and "Welcome" in line.splitlines()[0]
    assert "小明" in line  # the text part follows
    assert smtp[1].messages == []
    assert not [r for r in caplog.records if r.exc_info]


def test_the_console_backend_lets_an_email_reset_finish(console_app, caplog):
    caplog.set_level("INFO", logger="app.services.mail")
    client = console_app.test_client()
    with console_app.app_context():
        from app.services.users import create_user

        create_user(PHONE, PASSWORD, "小明", EMAIL)
    assert client.post("/api/auth/password/forgot", json={"email": EMAIL}).status_code == 200
    [line] = mail_lines(console_app, caplog)
    code = re.search(r"\b(\d{6})\b", line).group(1)
    body = {"email": EMAIL, "email_code": code, "new_password": "a brand new secret"}
    assert client.post("/api/auth/password/reset", json=body).status_code == 200
