"""Accounts: register, log in (password or SMS code), refresh, passwords. (Checking a token: app.auth.)

Redis keys this module names (under the configured prefix), for reset codes sent by mail:
  auth:email_code:<address>           the code, a hash (app.services.codes)    TTL auth.email_code_ttl
  auth:email_wait:<address>           the resend cooldown                      TTL sms.resend_after
  auth:email_day:address:<address>    mails asked for the address             TTL a day from the first
  auth:email_day:ip:<client address>  reset mails asked by the client         TTL a day from the first
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from app.config import configs
from app.errors import Forbidden, InvalidField, NotAuthorized, TooManyRequests
from app.extensions import db, redis_store
from app.models import User
from app.services import sessions
from app.services.codes import issue_code, reserve_send, use_code
from app.services.login_limits import account_key, clear_login_failures, reserve_password_check
from app.services.mail import send_email
from app.services.password_policy import check_new_password, password_context
from app.services.passwords import hash_password, needs_rehash, verify_password
from app.services.phones import normalize_phone
from app.services.sms import consume_sms_proof
from app.services.users import (
    check_unique,
    find_by_email,
    find_by_phone,
    normalize_email,
    save_user,
)

WRONG_CREDENTIALS = "Wrong account or password."
RESET_MAIL_REFUSALS = {
    2: "This address has had its reset mails for today.",
    3: "Too many reset mails were asked for from your address today.",
}


def register(phone: str, password: str, nickname: str, email: str | None = None, *,
             sms_code: str | None = None, sms_ticket: str | None = None) -> User:
    """A new account for a phone proven by an SMS code or ticket (purpose ``register``).

    The proof is used up before the phone and email are checked: without one, no answer tells whether they are
    taken, and each answer that does (409) costs a new code, so the SMS caps bound that too.
    """
    phone = normalize_phone(phone)
    email = normalize_email(email)
    check_new_password(password, context=password_context(phone, email, nickname))
    consume_sms_proof(phone, "register", code=sms_code, ticket=sms_ticket)
    check_unique(phone, email)
    user = save_user(User(phone=phone, email=email, nickname=nickname, password_hash=hash_password(password)))
    if user.email:
        send_email(user.email, "Welcome", "welcome", nickname=user.nickname, phone=user.phone)
    return user


def _account_user(account: str) -> User | None:
    if "@" in account:
        return find_by_email(normalize_email(account) or "")
    try:
        return find_by_phone(normalize_phone(account, field="account"))
    except InvalidField:
        return None


def _open(user: User, ip: str, user_agent: str) -> sessions.TokenPair:
    if not user.is_active:
        raise Forbidden("This account is deactivated.")
    user.last_login_at = datetime.now(UTC)
    db.session.commit()
    return sessions.open_session(user.id, ip, user_agent)


def login_with_password(account: str, password: str, ip: str, user_agent: str) -> tuple[sessions.TokenPair, User]:
    """Unknown account and wrong password answer the same 401 in the same time."""
    keys = [account_key(account)]
    reserve_password_check(keys, ip)
    user = _account_user(account.strip().lower())
    if not verify_password(user.password_hash if user else None, password) or user is None:
        raise NotAuthorized(WRONG_CREDENTIALS)
    clear_login_failures(keys, ip)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return _open(user, ip, user_agent), user


def login_with_sms(phone: str, sms_code: str, ip: str, user_agent: str) -> tuple[sessions.TokenPair, User]:
    phone = normalize_phone(phone)
    consume_sms_proof(phone, "login", code=sms_code)
    user = find_by_phone(phone)
    if user is None:
        raise NotAuthorized(WRONG_CREDENTIALS)
    return _open(user, ip, user_agent), user


def refresh(refresh_token: str) -> tuple[sessions.TokenPair, User]:
    """A new pair for a live refresh token; a retired one ends its session (401 either way)."""
    pair = sessions.rotate(refresh_token)
    if pair is None:
        raise NotAuthorized("The refresh token is unknown, expired or already used.")
    user = db.session.get(User, pair.user_id)
    if user is None or not user.is_active:
        sessions.end_all_sessions(pair.user_id)
        raise (NotAuthorized() if user is None else Forbidden("This account is deactivated."))
    return pair, user


def change_password(user: User, session_id: str, old_password: str, new_password: str, ip: str) -> None:
    """Every other session of the user ends. A wrong old password counts as a failed login of the user's phone
    and email, and from ``ip``."""
    keys = [account_key(user.phone), *([account_key(user.email)] if user.email else [])]
    reserve_password_check(keys, ip)
    if not verify_password(user.password_hash, old_password):
        raise InvalidField("The old password is wrong.", field="old_password")
    clear_login_failures(keys, ip)
    context = password_context(user.phone, user.email, user.nickname)
    check_new_password(new_password, "new_password", context=context)
    _replace_password(user, new_password, keep_session=session_id)


def _replace_password(user: User, new_password: str, keep_session: str | None = None) -> None:
    """Store the new hash and end the user's sessions (but ``keep_session``) on every process at once."""
    user.password_hash = hash_password(new_password)
    db.session.commit()
    sessions.end_all_sessions(user.id, keep=keep_session)


def reset_password_by_sms(phone: str, new_password: str, *, sms_code: str | None = None,
                          sms_ticket: str | None = None) -> None:
    """Every session of the user ends."""
    phone = normalize_phone(phone)
    check_new_password(new_password, "new_password", context=password_context(phone=phone))
    consume_sms_proof(phone, "reset_password", code=sms_code, ticket=sms_ticket)
    user = find_by_phone(phone)
    if user is None:
        raise InvalidField("No account uses this phone number.", field="phone")
    _replace_password(user, new_password)


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
    send_email(address, "Your password reset code", "reset_password", nickname=user.nickname, code=code,
               minutes=max(1, ttl // 60))


def reset_password_by_email(email: str, email_code: str, new_password: str) -> None:
    """Every session of the user ends; the code works once, and wrong tries void it as for SMS."""
    address = normalize_email(email) or ""
    check_new_password(new_password, "new_password", context=password_context(email=address))
    use_code(_email_code_key(address), email_code, "email_code", "reset_password", address)
    user = find_by_email(address)
    if user is None:
        raise InvalidField("No account uses this email.", field="email")
    _replace_password(user, new_password)
