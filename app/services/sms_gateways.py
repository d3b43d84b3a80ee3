"""Where SMS messages go. ``sms.gateway`` names one of GATEWAYS; a vendor gateway is one more class.

A gateway's ``send`` either delivers the message or raises SmsFailed; it never stores anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
from dataclasses import asdict, dataclass

import requests

from app.config import configs, project_path
from app.errors import SmsFailed
from app.i18n import _

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Signature"


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    text: str
    code: str
    purpose: str
    sent_at: str  # ISO 8601, UTC


class SmsGateway:
    """Base class: deliver one message or raise SmsFailed."""

    def send(self, message: SmsMessage) -> None:
        raise NotImplementedError


class ConsoleGateway(SmsGateway):
    """Development: the message goes to the log, code included."""

    def send(self, message: SmsMessage) -> None:
        log.info("SMS to %s (%s): %s", message.to, message.purpose, message.text)


class FileGateway(SmsGateway):
    """Local end-to-end runs: one JSON line per message appended to ``sms.outbox``."""

    def send(self, message: SmsMessage) -> None:
        path = project_path(configs.sms.outbox)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(message), ensure_ascii=False) + "\n"
        with path.open("a", encoding="utf-8") as outbox:
            fcntl.flock(outbox, fcntl.LOCK_EX)  # whole lines even with several processes
            outbox.write(line)


def sign(body: bytes, secret: str) -> str:
    """The http gateway's signature header value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HttpGateway(SmsGateway):
    """POSTs the message as JSON to ``sms.http.url``, signed with HMAC-SHA256 under ``sms.http.secret``."""

    def send(self, message: SmsMessage) -> None:
        settings = configs.sms.http
        if not settings.url:
            log.error("sms.gateway is http but sms.http.url is empty")
            raise SmsFailed(_("The SMS gateway is not configured."))
        body = json.dumps(asdict(message), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, settings.secret)}
        try:
            response = requests.post(settings.url, data=body, headers=headers, timeout=settings.timeout)
        except requests.RequestException as exc:
            log.error("SMS gateway unreachable: %s", type(exc).__name__)
            raise SmsFailed() from None
        if not response.ok:
            log.error("SMS gateway answered %s", response.status_code)
            raise SmsFailed()


GATEWAYS: dict[str, type[SmsGateway]] = {
    "console": ConsoleGateway,
    "file": FileGateway,
    "http": HttpGateway,
}


def current_gateway() -> SmsGateway:
    name = configs.sms.gateway
    if name not in GATEWAYS:
        raise SmsFailed(_("Unknown SMS gateway %(name)r; choose one of %(choices)s.", name=name,
                          choices=", ".join(GATEWAYS)))
    return GATEWAYS[name]()
