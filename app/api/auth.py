"""Authentication: register, log in (with a second factor when the user has one), refresh, passwords. Sessions,
step-up and events: app/api/sessions.py; the second factor's setup: app/api/mfa.py."""

import copy
from typing import Any

from flask import request
from flask_restx import Model, Namespace, Resource, fields

from app import auth
from app.api.envelope import Reply, accepts, fails, public, returns
from app.api.fields import (
    TICKET,
    Alternatives,
    Email,
    Phone,
    given_password,
    new_password,
    nickname,
    recovery_code,
    six_digit_code,
    user_model,
)
from app.decorators import log_record, login_check
from app.errors import InvalidField
from app.i18n import _
from app.services import accounts, sessions

ns = Namespace("auth", description="Register, log in and manage sessions")
ns.add_model(user_model.name, user_model)

PASSWORD = new_password(required=True, example="correct horse battery")
SMS_CODE = six_digit_code()
register_request = ns.add_model("Register", Alternatives("Register", {
    "phone": Phone(required=True, example="13800138000"),
    "password": PASSWORD,
    "nickname": nickname(required=True, example="小明"),
    "sms_code": SMS_CODE,
    "sms_ticket": fields.String(max_length=TICKET, description="from POST /common/sms/verify, instead of sms_code"),
    "email": Email(example="me@example.com"),
}, example={"phone": "13800138000", "password": "correct horse battery", "nickname": "小明", "sms_code": "123456",
            "email": "me@example.com"}))
login_request = ns.add_model("Login", Alternatives("Login", {
    "account": fields.String(max_length=254, description="phone or email, with password", example="13800138000"),
    "password": given_password(),
    "phone": Phone(description="with sms_code (purpose login), instead of account and password"),
    "sms_code": SMS_CODE,
}, example={"account": "13800138000", "password": "correct horse battery"}))
tokens = ns.model("Tokens", {
    "token": fields.String(required=True, description="access token: header `token` or `Authorization: Bearer`"),
    "expires_in": fields.Integer(required=True, example=7200, description="seconds the token is valid"),
    "refresh_token": fields.String(required=True),
    "refresh_expires_in": fields.Integer(required=True, example=2592000),
    "user": fields.Nested(user_model, required=True),
})
challenge = ns.model("MfaChallenge", {  # what a user with a second factor gets instead of the tokens
    "mfa_required": fields.Boolean(required=True, example=True),
    "mfa_ticket": fields.String(required=True, description="single use, 5 tries; for POST /auth/login/mfa"),
    "expires_in": fields.Integer(required=True, example=300, description="seconds the ticket is valid"),
})


def optional(model: Model) -> dict[str, Any]:
    """The model's fields, none required and nested ones nullable: for a model that holds one of several shapes
    (answered with ``skip_none``, so what a shape lacks is left out)."""
    copies = {}
    for name, field in model.items():
        copies[name] = copy.copy(field)
        copies[name].required = False
        if isinstance(field, fields.Nested):
            copies[name].allow_null = True
    return copies


login_result = ns.model("LoginResult", {
    **optional(tokens), **optional(challenge),
    "expires_in": fields.Integer(example=7200, description="seconds the token, or the mfa_ticket, is valid"),
})
login_mfa_request = ns.add_model("LoginMfa", Alternatives("LoginMfa", {
    "mfa_ticket": fields.String(required=True, max_length=TICKET, description="from POST /auth/login"),
    "code": six_digit_code(description="from the authenticator app"),
    "recovery_code": recovery_code(),
}, example={"mfa_ticket": "the mfa_ticket from POST /auth/login", "code": "123456"}))
refresh_request = ns.model("Refresh", {"refresh_token": fields.String(required=True, max_length=TICKET)})
password_change = ns.model("PasswordChange", {
    "old_password": given_password(required=True), "new_password": PASSWORD,
})
password_reset = ns.add_model("PasswordReset", Alternatives("PasswordReset", {
    "phone": Phone(example="13800138000", description="with sms_code or sms_ticket (purpose reset_password)"),
    "sms_code": SMS_CODE,
    "sms_ticket": fields.String(max_length=TICKET, description="from POST /common/sms/verify, instead of sms_code"),
    "email": Email(description="with email_code, from POST /auth/password/forgot"),
    "email_code": six_digit_code(),
    "new_password": PASSWORD,
}, example={"phone": "13800138000", "sms_code": "123456", "new_password": "correct horse battery"}))
password_forgot = ns.model("PasswordForgot", {"email": Email(required=True)})


def client() -> tuple[str, str]:
    return request.remote_addr or "", request.headers.get("User-Agent", "")


def issued(pair: sessions.TokenPair, user: Any) -> dict:
    auth.note_signed_in(user.id)  # the access line names who just signed in
    return {"token": pair.token, "expires_in": pair.expires_in, "refresh_token": pair.refresh_token,
            "refresh_expires_in": pair.refresh_expires_in, "user": user}


def challenged(found: accounts.Challenge) -> dict:
    return {"mfa_required": True, "mfa_ticket": found.ticket, "expires_in": found.expires_in}


def signed_in(result: accounts.SignIn) -> Reply:
    if isinstance(result, accounts.Challenge):
        return Reply(challenged(result), _("A second factor is required"))
    return Reply(issued(*result))


@ns.route("/register")
class Register(Resource):
    @public
    @log_record
    @accepts(ns, register_request)
    @returns(ns, user_model, code=201, description="Registered")
    @fails(ns, 409, 503)
    def post(self):
        """Register with a phone proven by sms_code or sms_ticket (purpose register)."""
        body = ns.payload
        return accounts.register(body["phone"], body["password"], body["nickname"], body.get("email"),
                                 sms_code=body.get("sms_code"), sms_ticket=body.get("sms_ticket"))


@ns.route("/login")
class Login(Resource):
    @public
    @log_record
    @accepts(ns, login_request)
    @returns(ns, login_result, skip_none=True,
             description="Logged in: the tokens; or, for a user with a second factor, mfa_required, mfa_ticket and "
                         "expires_in (no tokens)")
    @fails(ns, 401, 403, 429, 503)
    def post(self):
        """Log in with {account, password} or {phone, sms_code}. Repeated failures answer 429. A user with TOTP on
        gets an mfa_ticket for POST /auth/login/mfa instead of tokens."""
        body = ns.payload
        if body.get("phone") and body.get("sms_code"):
            return signed_in(accounts.login_with_sms(body["phone"], body["sms_code"], *client()))
        if body.get("account") and body.get("password") is not None:
            return signed_in(accounts.login_with_password(body["account"], body["password"], *client()))
        raise InvalidField(_("Give account and password, or phone and sms_code."), field="account")


@ns.route("/login/mfa")
class LoginMfa(Resource):
    @public
    @log_record
    @accepts(ns, login_mfa_request)
    @returns(ns, tokens, description="Logged in")
    @fails(ns, 401, 403, 429, 503)
    def post(self):
        """Finish a login (or a password reset) with the mfa_ticket and a TOTP code or a recovery code. A code is
        accepted once; 5 wrong codes void the ticket; 401 MFA_REQUIRED for a ticket that is missing, expired or
        used."""
        body = ns.payload
        return issued(*accounts.login_with_second_factor(body["mfa_ticket"], *client(), code=body.get("code"),
                                                         recovery_code=body.get("recovery_code")))


@ns.route("/refresh")
class Refresh(Resource):
    @public
    @log_record
    @accepts(ns, refresh_request)
    @returns(ns, tokens, description="A new pair; the old refresh token is retired")
    @fails(ns, 401, 403, 503)
    def post(self):
        """Trade a refresh token for a new pair. Presenting a retired one ends that whole session."""
        return issued(*accounts.refresh(ns.payload["refresh_token"]))


@ns.route("/password")
class Password(Resource):
    @login_check
    @log_record
    @accepts(ns, password_change)
    @returns(ns, description="Changed; every other session ended")
    @fails(ns, 429, 503)
    def put(self):
        """Change your password; your other sessions end. Wrong old passwords count as failed logins (429)."""
        body = ns.payload
        accounts.change_password(auth.current_user(), auth.current_identity().session_id, body["old_password"],
                                 body["new_password"], client()[0])


@ns.route("/password/forgot")
class PasswordForgot(Resource):
    @public
    @log_record
    @accepts(ns, password_forgot)
    @returns(ns, description="If the email belongs to an account, a reset code is on its way")
    @fails(ns, 429, 503)
    def post(self):
        """Mail a single-use reset code. The answer is the same whether or not the email is known; daily caps per
        address and per client answer 429."""
        accounts.forgot_password(ns.payload["email"], client()[0])


@ns.route("/password/reset")
class PasswordReset(Resource):
    @public
    @log_record
    @accepts(ns, password_reset)
    @returns(ns, challenge, nullable=True, description="Reset, every session of the user ended (data null); or, "
                                                       "for a user with a second factor, an mfa_ticket whose code "
                                                       "(POST /auth/login/mfa) sets the password")
    @fails(ns, 503)
    def post(self):
        """Reset a forgotten password with {phone, sms_code or sms_ticket} or {email, email_code}."""
        body = ns.payload
        if body.get("email"):
            found = accounts.reset_password_by_email(body["email"], body.get("email_code") or "",
                                                     body["new_password"])
        elif body.get("phone"):
            found = accounts.reset_password_by_sms(body["phone"], body["new_password"], sms_code=body.get("sms_code"),
                                                   sms_ticket=body.get("sms_ticket"))
        else:
            raise InvalidField(_("Give phone with sms_code or sms_ticket, or email with email_code."), field="phone")
        return None if found is None else Reply(challenged(found), _("A second factor is required"))
