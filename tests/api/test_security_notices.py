"""The owner is told by mail of every change to how their account signs in, through a real SMTP server: a
change they did not make does not go unseen. An email change is told to the old address."""

from __future__ import annotations

import email

import pytest

from tests.fixtures.accounts import PASSWORD, bearer, enable_totp, login, send_sms_code
from tests.support import deep_merge, wait_until

PHONE, ADDRESS = "+8613800138000", "me@example.com"
NEW_PASSWORD = "a brand new secret phrase"


@pytest.fixture
def mailed(make_app, accounts_settings, smtp, make_user):
    """(app, client, a token of PHONE's session, inbox) with mail going to a real SMTP server."""
    port, inbox = smtp
    app = make_app(deep_merge(accounts_settings, {"mail": {"server": "127.0.0.1", "port": port, "suppress": False}}))
    client = app.test_client()
    make_user(PHONE, email=ADDRESS)
    return app, client, login(client, PHONE)["token"], inbox


def mails(inbox, count: int) -> list[tuple[str, str, str]]:
    """(recipient, subject, text) of the first ``count`` mails, once they arrived."""
    wait_until(lambda: len(inbox.messages) >= count, timeout=10)
    found = []
    for mail in inbox.messages[:count]:
        message = email.message_from_bytes(mail.content)
        text = next(part.get_payload(decode=True).decode() for part in message.walk()
                    if part.get_content_type() == "text/plain")
        found.append((mail.rcpt_tos[0], message["Subject"], text))
    return found


def test_a_password_change_is_told(mailed):
    _, client, token, inbox = mailed
    body = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.put("/api/auth/password", headers=bearer(token), json=body).status_code == 200
    [(to, subject, text)] = mails(inbox, 1)
    assert (to, "password was changed" in subject) == (ADDRESS, True)
    assert NEW_PASSWORD not in text and "If it was not" in text


def test_a_reset_is_told(mailed):
    app, client, _, inbox = mailed
    code = send_sms_code(client, app, PHONE, "reset_password")
    reset = client.post("/api/auth/password/reset", json={"phone": PHONE, "sms_code": code,
                                                          "new_password": NEW_PASSWORD})
    assert reset.status_code == 200
    assert "password was reset" in mails(inbox, 1)[0][1]


def test_turning_totp_on_and_off_and_new_codes_are_told(mailed):
    _, client, token, inbox = mailed
    enable_totp(client, token)
    assert client.post("/api/auth/mfa/recovery-codes", headers=bearer(token)).status_code == 200
    assert client.delete("/api/auth/mfa/totp", headers=bearer(token)).status_code == 204
    subjects = [subject for _, subject, _ in mails(inbox, 3)]
    assert sorted(s.split("] ", 1)[1] for s in subjects) == [  # sent in the background: in any order
        "New recovery codes", "Two-step sign-in is off", "Two-step sign-in is on"]


def test_an_email_change_is_told_to_the_old_address(mailed):
    _, client, token, inbox = mailed
    changed = client.patch("/api/users/me", headers=bearer(token), json={"email": "thief@example.com"})
    assert changed.status_code == 200
    [(to, subject, text)] = mails(inbox, 1)
    assert (to, "email was changed" in subject, "thief@example.com" in text) == (ADDRESS, True, True)
