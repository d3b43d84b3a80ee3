"""SMS verification codes: send, verify, and consume a code or a ticket as proof of a phone.

Redis keys (all under the configured prefix, each written with its TTL):
  sms:code:<purpose>:<phone>      hash {hash, tries}: the current code, HMAC'd; TTL sms.code_ttl
  sms:wait:<purpose>:<phone>      resend cooldown; TTL sms.resend_after
  sms:day:phone:<phone>           messages to the phone in the 24 h window that its first message opened
  sms:day:ip:<address>            messages requested by a client address, likewise
  sms:ticket:<hmac of ticket>     "<purpose>:<phone>"; TTL sms.ticket_ttl; deleted when used
Every check-and-update is one Lua script, so concurrent requests cannot both pass a check; the codes
themselves live in app.services.codes.
"""

from __future__ import annotations

import logging
import math
import secrets
from datetime import UTC, datetime
from typing import Any

from app.config import configs
from app.errors import Conflict, InvalidField, NotFound, SmsFailed, TooManyRequests
from app.extensions import redis_store
from app.i18n import N_, _
from app.services.codes import digest, issue_code, reserve_send, use_code
from app.services.sms_gateways import SmsMessage, current_gateway
from app.services.users import phone_registered

log = logging.getLogger(__name__)

PURPOSES = ("register", "login", "reset_password")
# sms.template's default, for the catalogue: a template is sent in the request's language when the catalogue has
# it (add your own template's translation there too), else as configured.
DEFAULT_TEMPLATE = N_("Your verification code is {code}. It expires in {minutes} minutes.")

# KEYS: ticket. ARGV: expected "<purpose>:<phone>". Deletes and returns 1 only when it matches.
_TAKE_TICKET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


def code_key(phone: str, purpose: str) -> str:
    return redis_store.key("sms", "code", purpose, phone)


def _ticket_key(ticket: str) -> str:
    return redis_store.key("sms", "ticket", digest("ticket", ticket))


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise InvalidField(_("purpose must be one of %(choices)s", choices=", ".join(PURPOSES)), field="purpose")


def _check_account(phone: str, purpose: str) -> None:
    registered = phone_registered(phone)
    if purpose == "register" and registered:
        raise Conflict(_("This phone number is already registered."), field="phone")
    if purpose != "register" and not registered:
        raise NotFound(_("No account uses this phone number."), field="phone")


def send_code(phone: str, purpose: str, client_ip: str) -> dict[str, int]:
    """Send a new code to ``phone`` for ``purpose``; 429 inside the cooldown or over a daily cap."""
    _check_purpose(purpose)
    _check_account(phone, purpose)
    settings = configs.sms
    wait_key = redis_store.key("sms", "wait", purpose, phone)
    phone_key = redis_store.key("sms", "day", "phone", phone)
    ip_key = redis_store.key("sms", "day", "ip", client_ip or "unknown")
    reason, wait_ms = reserve_send(wait_key, phone_key, ip_key, settings.resend_after, settings.daily_cap_per_phone,
                                   settings.daily_cap_per_ip)
    if reason:
        refusal = {
            1: _("A code was just sent; wait before asking for another."),
            2: _("This phone number has had its codes for today."),
            3: _("Too many codes were requested from your address today."),
        }[reason]
        raise TooManyRequests(refusal, retry_after=math.ceil(wait_ms / 1000))

    code = issue_code(code_key(phone, purpose), settings.code_ttl, purpose, phone)
    message = SmsMessage(
        to=phone, code=code, purpose=purpose, sent_at=datetime.now(UTC).isoformat(timespec="seconds"),
        text=_(settings.template).format(code=code, minutes=max(1, settings.code_ttl // 60), purpose=purpose),
    )
    try:
        current_gateway().send(message)
    except SmsFailed:
        _undo_send(phone, purpose, wait_key, phone_key, ip_key)
        raise
    return {"expires_in": settings.code_ttl, "resend_after": settings.resend_after}


def _undo_send(phone: str, purpose: str, *reserved: str) -> None:
    """A message that was not sent leaves no code and costs no cooldown or cap."""
    wait_key, phone_key, ip_key = reserved
    with redis_store.pipeline(transaction=True) as pipe:
        pipe.delete(code_key(phone, purpose), wait_key)
        pipe.decr(phone_key)
        pipe.decr(ip_key)
        pipe.execute()


def verify_code(phone: str, purpose: str, code: str) -> dict[str, Any]:
    """Trade a right code for a single-use ``sms_ticket``; the code is used up."""
    _check_purpose(purpose)
    ticket = secrets.token_urlsafe(32)
    use_code(code_key(phone, purpose), code, "code", purpose, phone, ticket_key=_ticket_key(ticket),
             ticket=f"{purpose}:{phone}", ticket_ttl=configs.sms.ticket_ttl)
    return {"sms_ticket": ticket, "expires_in": configs.sms.ticket_ttl}


def check_sms_proof_pending(phone: str, purpose: str, *, code: str | None = None,
                            ticket: str | None = None) -> None:
    """400 as ``consume_sms_proof`` would when there is no proof to use at all (no live code, no such ticket),
    without using anything up: callers run it before costly checks (a password's strength) that anyone could
    otherwise make the server do without a code."""
    _check_purpose(purpose)
    if ticket:
        if redis_store.get(_ticket_key(ticket)) != f"{purpose}:{phone}":
            raise InvalidField(_("The SMS ticket is unknown, expired, used, or for another number."),
                               field="sms_ticket")
        return
    if not code:
        raise InvalidField(_("Give sms_code or sms_ticket."), field="sms_code")
    if not redis_store.exists(code_key(phone, purpose)):
        raise InvalidField(_("No valid code; request a new one."), field="sms_code")


def consume_sms_proof(phone: str, purpose: str, *, code: str | None = None, ticket: str | None = None) -> None:
    """Accept either an SMS code (field ``sms_code``) or a ticket (``sms_ticket``) as proof of ``phone``.

    Either is used up by this call. This is what registration, SMS login and reset call.
    """
    _check_purpose(purpose)
    if ticket:
        if not redis_store.run_script(_TAKE_TICKET, keys=[_ticket_key(ticket)], args=[f"{purpose}:{phone}"]):
            raise InvalidField(_("The SMS ticket is unknown, expired, used, or for another number."),
                               field="sms_ticket")
        return
    if not code:
        raise InvalidField(_("Give sms_code or sms_ticket."), field="sms_code")
    use_code(code_key(phone, purpose), code, "sms_code", purpose, phone)
