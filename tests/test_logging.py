"""logging.ini: loaded at start, log directory made, request ids on every line, ERROR mails when enabled."""

from __future__ import annotations

import logging

import pytest
from aiosmtpd.controller import Controller
from conftest import free_port, wait_until

from app.logs import AdminMailHandler


class Inbox:
    """An aiosmtpd handler that keeps what arrives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def test_log_directory_is_made_and_lines_carry_the_request_id(make_app, tmp_path):
    logfile = tmp_path / "deep" / "er" / "app.log"
    app = make_app({"log": {"file": str(logfile)}, "redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}})
    app.test_client().get("/api/health", headers={"X-Request-ID": "trace-77"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = logfile.read_text()
    assert "[trace-77] health: redis unreachable" in text


def test_lines_outside_a_request_carry_a_dash(make_app, tmp_path):
    logfile = tmp_path / "app.log"
    make_app({"log": {"file": str(logfile)}})
    logging.getLogger("probe").warning("outside any request")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "[-] outside any request" in logfile.read_text()


def test_error_mail_handler_is_configured_but_off_by_default(make_app, smtp):
    port, inbox = smtp
    app = make_app({"mail": {"server": "127.0.0.1", "port": port, "admins": ["ops@example.com"]}})
    assert any(isinstance(h, AdminMailHandler) for h in logging.getLogger().handlers)
    with app.app_context():
        logging.getLogger("probe").error("nobody should be mailed")
        logging.getLogger("probe").warning("marker")
    assert inbox.messages == []


def test_error_records_are_mailed_to_admins_when_enabled(make_app, smtp):
    port, inbox = smtp
    app = make_app({
        "log": {"mail_errors": True},
        "mail": {"server": "127.0.0.1", "port": port, "admins": ["ops@example.com"]},
    })
    with app.app_context():
        logging.getLogger("probe").warning("not an error")
        logging.getLogger("probe").error("disk on fire")
    wait_until(lambda: inbox.messages, timeout=5)
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message.rcpt_tos == ["ops@example.com"]
    assert "disk on fire" in message.content.decode()
