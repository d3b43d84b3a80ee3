"""The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, with pyotp) and single-use recovery codes.

The TOTP secret is stored in ``users.totp_secret`` encrypted (Fernet) under a key derived from SECRET_KEY with
HKDF, so a copy of the database alone does not give the factor; changing SECRET_KEY voids every enrolment. A code
is accepted for the current 30-second step and one step either side (clock drift), and once: the last step used
is kept per user in Redis and a code of that step or an earlier one is refused, atomically across processes.

Recovery codes are 16 characters from a 32-letter alphabet (80 bits), shown once, kept as Argon2id hashes (cheap
parameters: at 80 bits no guessing gets anywhere) found by their first 4 characters; a used code is deleted.

Redis keys: auth:totp_pending:<user id> (an enrolment not confirmed yet, encrypted; TTL ENROLMENT_TTL) and
auth:totp_last:<user id> (the last step used; TTL a little over the window a code is valid in).
Wrong codes count against ``mfa:<user id>`` and the client address as failed logins do (app.services.login_limits):
a password alone then cannot buy unlimited guesses through new tickets.
"""

from __future__ import annotations

import io
import secrets
import time

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select

from app.config import configs
from app.errors import Conflict, InvalidField, NotFound
from app.extensions import db, redis_store
from app.i18n import _
from app.models import RecoveryCode, User
from app.services import security_events, sessions
from app.services.login_limits import clear_login_failures, reserve_password_check
from app.services.mail import send_email
from app.services.sealing import seal, unseal

STEP, DIGITS, DRIFT = 30, 6, 1  # seconds per code, digits, steps accepted either side
ENROLMENT_TTL = 600  # seconds to confirm a started enrolment
RECOVERY_CODES, RECOVERY_ALPHABET, RECOVERY_LENGTH, SELECTOR = 10, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 16, 4
_recovery_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

# KEYS: last step used. ARGV: the step of the code, ttl. 1 when the step is newer than the last used (now recorded).
_USE_STEP = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def _encrypt(secret: str) -> str:
    return seal("totp-secret", secret)


def _decrypt(token: str) -> str:
    return unseal("totp-secret", token)


def _key(*parts: str) -> str:
    return redis_store.key("auth", *parts)


def _matching_step(secret: str, code: str) -> int | None:
    """The step within ±DRIFT of now whose code is ``code``, or None."""
    totp, now = pyotp.TOTP(secret, digits=DIGITS, interval=STEP), int(time.time()) // STEP
    for step in range(now - DRIFT, now + DRIFT + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _totp_code_ok(user_id: int, secret: str, code: str) -> bool:
    """Whether ``code`` is valid now and its step not used before (recording it used)."""
    step = _matching_step(secret, code) if code.isdigit() and len(code) == DIGITS else None
    return step is not None and bool(redis_store.run_script(
        _USE_STEP, keys=[_key("totp_last", str(user_id))], args=[step, STEP * (2 * DRIFT + 2)]))


def _limited(user_id: int, ip: str) -> list[str]:
    keys = [f"mfa:{user_id}"]
    reserve_password_check(keys, ip)
    return keys


# --- enrolment -----------------------------------------------------------------------------------------------


def start_totp(user: User) -> dict[str, str]:
    """A new secret, its ``otpauth://`` URI and the URI as a QR code (SVG); TOTP is on only after
    ``confirm_totp``. 409 while TOTP is on."""
    if user.has_totp:
        raise Conflict(_("TOTP is already on; turn it off first."))
    secret = pyotp.random_base32()
    redis_store.set(_key("totp_pending", str(user.id)), _encrypt(secret), ex=ENROLMENT_TTL)
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(
        name=user.email or user.phone, issuer_name=configs.app.name)
    svg = io.BytesIO()
    segno.make_qr(uri, error="m").save(svg, kind="svg", scale=4, xmldecl=False)
    return {"secret": secret, "otpauth_uri": uri, "qr_svg": svg.getvalue().decode()}


def confirm_totp(user: User, code: str, session_id: str, ip: str) -> list[str]:
    """Turn TOTP on with a code from the started enrolment; the new recovery codes. Every other session ends."""
    if user.has_totp:
        raise Conflict(_("TOTP is already on."))
    pending = redis_store.get(_key("totp_pending", str(user.id)))
    if pending is None:
        raise InvalidField(_("No enrolment is waiting (or it expired): start one with POST /auth/mfa/totp."),
                           field="code")
    secret = _decrypt(pending)
    keys = _limited(user.id, ip)
    if not _totp_code_ok(user.id, secret, code):
        raise InvalidField(_("The code is wrong or was used already."), field="code")
    clear_login_failures(keys, ip)
    user.totp_secret = _encrypt(secret)
    codes = _replace_recovery_codes(user)
    security_events.record(user.id, "mfa_enabled", session_id)
    sessions.end_all_sessions(user.id, keep=session_id)  # first: a commit whose answer is lost may still have happened
    db.session.commit()
    redis_store.delete(_key("totp_pending", str(user.id)))
    sessions.mark_recent(session_id, second_factor=True)  # the code just proved the new factor
    security_events.tell_owner(user, "mfa_enabled")
    return codes


def disable_totp(user: User, session_id: str | None) -> None:
    """TOTP off; the recovery codes are void. 404 when it is not on."""
    if not user.has_totp:
        raise NotFound(_("TOTP is not on."))
    user.totp_secret = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    security_events.record(user.id, "mfa_disabled", session_id)
    db.session.commit()
    security_events.tell_owner(user, "mfa_disabled")


def reset_second_factor(user: User) -> None:
    """An operator's reset for a user who lost the factor and the codes (``manage.py mfa-reset``): TOTP off, and
    every session ends."""
    disable_totp(user, None)
    sessions.end_all_sessions(user.id)


def renew_recovery_codes(user: User, session_id: str) -> list[str]:
    """A new set of recovery codes; the old set is void. 409 while TOTP is off."""
    if not user.has_totp:
        raise Conflict(_("Turn TOTP on first: recovery codes stand in for it."))
    codes = _replace_recovery_codes(user)
    security_events.record(user.id, "recovery_codes_renewed", session_id)
    db.session.commit()
    security_events.tell_owner(user, "recovery_codes_renewed")
    return codes


def status(user: User) -> dict[str, object]:
    left = db.session.scalar(select(func.count()).where(RecoveryCode.user_id == user.id)) or 0
    return {"totp": user.has_totp, "recovery_codes_left": int(left)}


def _replace_recovery_codes(user: User) -> list[str]:
    """A new set for the user; the user's row is locked first (FOR UPDATE; SQLite has one writer), so two
    renewals at once run one after the other and leave one set, not both."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH)) for _ in range(RECOVERY_CODES)]
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.add_all(RecoveryCode(user_id=user.id, selector=code[:SELECTOR], code_hash=_recovery_hasher.hash(code))
                       for code in codes)
    return ["-".join(code[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4)) for code in codes]


# --- checking ------------------------------------------------------------------------------------------------


def check_second_factor(user: User, ip: str, *, code: str | None = None, recovery_code: str | None = None,
                        session_id: str | None = None) -> None:
    """400 on ``code`` or ``recovery_code`` unless it proves the user's second factor; a recovery code is used up
    (an event, and a mail when the user has an email). 429 after too many wrong codes (as for logins)."""
    if not user.has_totp or user.totp_secret is None:
        raise InvalidField(_("This account has no second factor."), field="code")
    if bool(code) == bool(recovery_code):
        raise InvalidField(_("Give code or recovery_code."), field="code")
    keys = _limited(user.id, ip)
    if code:
        if not _totp_code_ok(user.id, _decrypt(user.totp_secret), code):
            raise InvalidField(_("The code is wrong or was used already."), field="code")
    elif not _use_recovery_code(user, recovery_code or "", session_id):
        raise InvalidField(_("The recovery code is wrong or was used already."), field="recovery_code")
    clear_login_failures(keys, ip)


def _use_recovery_code(user: User, given: str, session_id: str | None) -> bool:
    code = "".join(given.split()).replace("-", "").upper()
    if len(code) != RECOVERY_LENGTH:
        return False
    rows = db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                         RecoveryCode.selector == code[:SELECTOR]))
    for row in rows:
        try:
            _recovery_hasher.verify(row.code_hash, code)
        except (VerificationError, InvalidHashError):
            continue
        # Deleting the row is the use: of two requests with the same code, one deletes it and the other none.
        deleted = db.session.execute(delete(RecoveryCode).where(RecoveryCode.id == row.id))
        if getattr(deleted, "rowcount", 0) != 1:  # a DELETE's result is a CursorResult
            db.session.rollback()
            return False
        security_events.record(user.id, "recovery_code_used", session_id)
        db.session.commit()
        if user.email:
            send_email(user.email, _("A recovery code was used"), "recovery_code_used", nickname=user.nickname,
                       left=status(user)["recovery_codes_left"])
        return True
    return False
