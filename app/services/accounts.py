"""Accounts: register, log in (password or SMS code), refresh, passwords. (Checking a token: app.auth.)

Redis keys this module names (under the configured prefix), for reset codes sent by mail:
  auth:email_code:<address>           the code, a hash (app.services.codes)    TTL auth.email_code_ttl
  auth:email_wait:<address>           the resend cooldown                      TTL sms.resend_after
  auth:email_day:address:<address>    mails asked for the address             TTL a day from the first
  auth:email_day:ip:<client address>  reset mails asked by the client         TTL a day from the first
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from app.config import configs
from app.errors import Forbidden, InvalidField, MfaRequired, NotAuthorized, TooManyRequests
from app.extensions import db, redis_store
from app.i18n import _, lazy_gettext
from app.models import User
from app.services import mfa, mfa_tickets, security_events, session_control, sessions
from app.services.codes import REFUSALS, issue_code, reserve_send, use_code
from app.services.login_limits import account_key, clear_login_failures, reserve_password_check, user_key
from app.services.mail import send_email
from app.services.password_policy import check_new_password, password_context
from app.services.passwords import hash_password, needs_rehash, verify_password
from app.services.phones import normalize_phone
from app.services.sms import check_sms_proof_pending, consume_sms_proof
from app.services.users import (
    check_unique,
    find_by_email,
    find_by_phone,
    normalize_email,
    save_user,
)

WRONG_CREDENTIALS = lazy_gettext("Wrong account or password.")


@dataclass(frozen=True)
class Challenge:
    """The first factor passed, and the user has a second one: trade ``ticket`` at POST /auth/login/mfa."""

    ticket: str
    expires_in: int = mfa_tickets.TICKET_TTL


SignIn = tuple[sessions.TokenPair, User] | Challenge
RESET_MAIL_REFUSALS = {
    2: lazy_gettext("This address has had its reset mails for today."),
    3: lazy_gettext("Too many reset mails were asked for from your address today."),
}


def register(phone: str, password: str, nickname: str, email: str | None = None, *,
             sms_code: str | None = None, sms_ticket: str | None = None) -> User:
    """A new account for a phone proven by an SMS code or ticket (purpose ``register``).

    The proof is used up before the phone and email are checked: without one, no answer tells whether they are
    taken, and each answer that does (409) costs a new code, so the SMS caps bound that too.
    """
    phone = normalize_phone(phone)
    email = normalize_email(email)
    check_sms_proof_pending(phone, "register", code=sms_code, ticket=sms_ticket)  # before the costly scoring
    check_new_password(password, context=password_context(phone, email, nickname))
    consume_sms_proof(phone, "register", code=sms_code, ticket=sms_ticket)
    check_unique(phone, email)
    user = save_user(User(phone=phone, email=email, nickname=nickname, password_hash=hash_password(password)))
    if user.email:
        send_email(user.email, _("Welcome"), "welcome", nickname=user.nickname, phone=user.phone)
    return user


def _account_user(account: str) -> User | None:
    if "@" in account:
        return find_by_email(normalize_email(account) or "")
    try:
        return find_by_phone(normalize_phone(account, field="account"))
    except InvalidField:
        return None


def _open(user: User, ip: str, user_agent: str, second_factor: bool = False) -> tuple[sessions.TokenPair, User]:
    """A new session for an active user, its ``login`` event and last-login time committed first; the user's
    oldest session ends when there are more than ``auth.max_sessions``."""
    if not user.is_active:
        raise Forbidden(_("This account is deactivated."))
    session_id = sessions.new_session_id()
    user.last_login_at = datetime.now(UTC)
    security_events.record(user.id, "login", session_id)
    db.session.commit()
    pair = sessions.open_session(user.id, ip, user_agent, session_id, second_factor)
    session_control.end_oldest_sessions(user.id)
    return pair, user


def _signed_in(user: User, ip: str, user_agent: str) -> SignIn:
    """Tokens after the first factor, or a ticket for the second when the user has one (ASVS 6.4.3: an SMS code
    or a reset is never a way round it)."""
    if not user.is_active:
        raise Forbidden(_("This account is deactivated."))
    if user.has_totp:
        return Challenge(mfa_tickets.issue(user.id, "login"))
    return _open(user, ip, user_agent)


def login_with_password(account: str, password: str, ip: str, user_agent: str) -> SignIn:
    """Unknown account and wrong password answer the same 401 in the same time; a wrong password of a known
    account is a ``login_failed`` event."""
    user = _account_user(account.strip().lower())
    keys = [user_key(user.id) if user else account_key(account)]
    reserve_password_check(keys, ip)
    if not verify_password(user.password_hash if user else None, password) or user is None:
        if user is not None:
            security_events.record_now(user.id, "login_failed")
        raise NotAuthorized(WRONG_CREDENTIALS)
    clear_login_failures(keys, ip)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return _signed_in(user, ip, user_agent)


def login_with_sms(phone: str, sms_code: str, ip: str, user_agent: str) -> SignIn:
    phone = normalize_phone(phone)
    consume_sms_proof(phone, "login", code=sms_code)
    user = find_by_phone(phone)
    if user is None:
        raise NotAuthorized(WRONG_CREDENTIALS)
    return _signed_in(user, ip, user_agent)


def login_with_second_factor(ticket: str, ip: str, user_agent: str, *, code: str | None = None,
                             recovery_code: str | None = None) -> tuple[sessions.TokenPair, User]:
    """Trade an MFA ticket and a TOTP or recovery code for a session; a reset's ticket sets its new password
    first (every other session ends). 401 MFA_REQUIRED for a ticket that is not live; a wrong code is 400 and a
    ``login_failed`` event, and the ticket's last try voids it."""
    found = mfa_tickets.try_ticket(ticket)
    user = db.session.get(User, found.user_id) if found else None
    if found is None or user is None or not user.has_totp:
        raise MfaRequired()
    if not user.is_active:  # before the code is checked: a recovery code or a reset must not be spent on a 403
        raise Forbidden(_("This account is deactivated."))
    try:
        mfa.check_second_factor(user, ip, code=code, recovery_code=recovery_code)
    except InvalidField:
        security_events.record_now(user.id, "login_failed")
        if found.last_try:
            mfa_tickets.void(ticket)
        raise
    if not mfa_tickets.use(ticket):
        raise MfaRequired()
    if found.purpose == "reset_password":
        user.password_hash = found.password_hash
        security_events.record(user.id, "password_reset")
        sessions.end_all_sessions(user.id)  # first: a commit whose answer is lost may still have happened
        db.session.commit()
        security_events.tell_owner(user, "password_reset")
    return _open(user, ip, user_agent, second_factor=True)


def refresh(refresh_token: str) -> tuple[sessions.TokenPair, User]:
    """A new pair for a live refresh token; a retired one ends its session and is a ``refresh_reuse`` event
    (401 either way)."""
    rotation = sessions.rotate(refresh_token)
    if rotation.reused_by is not None:
        session_id, user_id = rotation.reused_by
        if db.session.get(User, user_id) is not None:
            security_events.record_now(user_id, "refresh_reuse", session_id)
    pair = rotation.pair
    if pair is None:
        raise NotAuthorized(_("The refresh token is unknown, expired or already used."))
    user = db.session.get(User, pair.user_id)
    if user is None or not user.is_active:
        sessions.end_all_sessions(pair.user_id)
        raise (NotAuthorized() if user is None else Forbidden(_("This account is deactivated.")))
    return pair, user


def change_password(user: User, session_id: str, old_password: str, new_password: str, ip: str) -> None:
    """Every other session of the user ends. A wrong old password counts as a failed login of the user, and from
    ``ip``."""
    keys = [user_key(user.id)]
    reserve_password_check(keys, ip)
    if not verify_password(user.password_hash, old_password):
        raise InvalidField(_("The old password is wrong."), field="old_password")
    clear_login_failures(keys, ip)
    context = password_context(user.phone, user.email, user.nickname)
    check_new_password(new_password, "new_password", context=context)
    user.password_hash = hash_password(new_password)
    security_events.record(user.id, "password_changed", session_id)
    sessions.end_all_sessions(user.id, keep=session_id)  # first: a commit whose answer is lost may still have happened
    db.session.commit()
    security_events.tell_owner(user, "password_changed")


def _reset(user: User, new_password: str) -> Challenge | None:
    """Set the new password and end every session of the user; for a user with a second factor, only a ticket
    whose code (POST /auth/login/mfa) sets it (ASVS 6.4.3)."""
    password_hash = hash_password(new_password)
    if user.has_totp:
        return Challenge(mfa_tickets.issue(user.id, "reset_password", password_hash))
    user.password_hash = password_hash
    security_events.record(user.id, "password_reset")
    sessions.end_all_sessions(user.id)  # first: a commit whose answer is lost may still have happened
    db.session.commit()
    security_events.tell_owner(user, "password_reset")
    return None


def reset_password_by_sms(phone: str, new_password: str, *, sms_code: str | None = None,
                          sms_ticket: str | None = None) -> Challenge | None:
    """Every session of the user ends (see ``_reset`` for a user with a second factor)."""
    phone = normalize_phone(phone)
    check_sms_proof_pending(phone, "reset_password", code=sms_code, ticket=sms_ticket)  # before the costly scoring
    check_new_password(new_password, "new_password", context=password_context(phone=phone))
    consume_sms_proof(phone, "reset_password", code=sms_code, ticket=sms_ticket)
    user = find_by_phone(phone)
    if user is None:
        raise InvalidField(_("No account uses this phone number."), field="phone")
    return _reset(user, new_password)


def _email_code_key(email: str) -> str:
    return redis_store.key("auth", "email_code", email)


def forgot_password(email: str, ip: str) -> None:
    """Mail a single-use reset code to a known, active account; say nothing either way (no discovery).

    One mail per address per ``sms.resend_after`` seconds (later asks inside that time are ignored), and at most
    ``auth.reset_mails_per_address`` per address and ``reset_mails_per_ip`` per client a day (429 beyond). Every
    well-formed address is counted alike, known or not, so the answers do not tell which is.
    """
    address = normalize_email(email)
    if address is None:
        return
    reason, wait_ms = reserve_send(redis_store.key("auth", "email_wait", address),
                                   redis_store.key("auth", "email_day", "address", address),
                                   redis_store.key("auth", "email_day", "ip", ip or "unknown"),
                                   configs.sms.resend_after, configs.auth.reset_mails_per_address,
                                   configs.auth.reset_mails_per_ip)
    if reason in RESET_MAIL_REFUSALS:
        raise TooManyRequests(RESET_MAIL_REFUSALS[reason], retry_after=math.ceil(wait_ms / 1000))
    user = find_by_email(address)
    if reason or user is None or not user.is_active:
        return
    ttl = configs.auth.email_code_ttl
    code = issue_code(_email_code_key(address), ttl, "reset_password", address)
    send_email(address, _("Your password reset code"), "reset_password", nickname=user.nickname, code=code,
               minutes=max(1, ttl // 60))


def reset_password_by_email(email: str, email_code: str, new_password: str) -> Challenge | None:
    """As ``reset_password_by_sms``; the code works once, and wrong tries void it as for SMS."""
    address = normalize_email(email) or ""
    if not redis_store.exists(_email_code_key(address)):  # before the costly scoring: no code, nothing to check
        raise InvalidField(REFUSALS[0], field="email_code")
    check_new_password(new_password, "new_password", context=password_context(email=address))
    use_code(_email_code_key(address), email_code, "email_code", "reset_password", address)
    user = find_by_email(address)
    if user is None:
        raise InvalidField(_("No account uses this email."), field="email")
    return _reset(user, new_password)
