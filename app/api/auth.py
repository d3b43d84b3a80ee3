"""Authentication: register, log in, refresh, log out, sessions and passwords."""

from typing import Any

from flask import request
from flask_restx import Namespace, Resource, fields

from app import auth
from app.api.envelope import Timestamp, accepts, fails, public, returns, returns_nothing
from app.api.fields import Email, Phone, given_password, new_password, nickname, six_digit_code, user_model
from app.config import configs
from app.decorators import log_record, login_check
from app.errors import InvalidField, NotFound
from app.services import accounts, sessions

ns = Namespace("auth", description="Register, log in and manage sessions")
ns.add_model(user_model.name, user_model)

PASSWORD = new_password(required=True, example="correct horse battery")
SMS_CODE = six_digit_code()
TICKET = 128  # characters: tickets and tokens are 43 (32 random bytes, URL-safe base64)
register_request = ns.model("Register", {
    "phone": Phone(required=True, example="13800138000"),
    "password": PASSWORD,
    "nickname": nickname(required=True, example="小明"),
    "sms_code": SMS_CODE,
    "sms_ticket": fields.String(max_length=TICKET, description="from POST /common/sms/verify, instead of sms_code"),
    "email": Email(example="me@example.com"),
})
login_request = ns.model("Login", {
    "account": fields.String(max_length=254, description="phone or email, with password", example="13800138000"),
    "password": given_password(),
    "phone": Phone(description="with sms_code (purpose login), instead of account and password"),
    "sms_code": SMS_CODE,
})
tokens = ns.model("Tokens", {
    "token": fields.String(required=True, description="access token: header `token` or `Authorization: Bearer`"),
    "expires_in": fields.Integer(required=True, example=7200),
    "refresh_token": fields.String(required=True),
    "refresh_expires_in": fields.Integer(required=True, example=2592000),
    "user": fields.Nested(user_model, required=True),
})
refresh_request = ns.model("Refresh", {"refresh_token": fields.String(required=True, max_length=TICKET)})
session_model = ns.model("Session", {
    "id": fields.String(required=True),
    "created_at": Timestamp(required=True),
    "last_seen_at": Timestamp(required=True),
    "ip": fields.String(required=True),
    "user_agent": fields.String(required=True),
    "current": fields.Boolean(required=True),
})
password_change = ns.model("PasswordChange", {
    "old_password": given_password(required=True), "new_password": PASSWORD,
})
password_reset = ns.model("PasswordReset", {
    "phone": Phone(example="13800138000", description="with sms_code or sms_ticket (purpose reset_password)"),
    "sms_code": SMS_CODE,
    "sms_ticket": fields.String(max_length=TICKET, description="from POST /common/sms/verify, instead of sms_code"),
    "email": Email(description="with email_code, from POST /auth/password/forgot"),
    "email_code": six_digit_code(),
    "new_password": PASSWORD,
})
password_forgot = ns.model("PasswordForgot", {"email": Email(required=True)})


def client() -> tuple[str, str]:
    return request.remote_addr or "", request.headers.get("User-Agent", "")


def issued(pair: sessions.TokenPair, user: Any) -> dict:
    auth.note_signed_in(user.id)  # the access line names who just signed in
    return {"token": pair.token, "expires_in": configs.auth.token_ttl, "refresh_token": pair.refresh_token,
            "refresh_expires_in": configs.auth.refresh_ttl, "user": user}


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
    @returns(ns, tokens, description="Logged in")
    @fails(ns, 401, 403, 429, 503)
    def post(self):
        """Log in with {account, password} or {phone, sms_code}. Repeated failures answer 429."""
        body = ns.payload
        if body.get("phone") and body.get("sms_code"):
            return issued(*accounts.login_with_sms(body["phone"], body["sms_code"], *client()))
        if body.get("account") and body.get("password") is not None:
            return issued(*accounts.login_with_password(body["account"], body["password"], *client()))
        raise InvalidField("Give account and password, or phone and sms_code.", field="account")


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


@ns.route("/logout")
class Logout(Resource):
    @login_check
    @log_record
    @returns(ns, description="The session ended")
    @fails(ns, 503)
    def post(self):
        """End the current session."""
        caller = auth.current_identity()
        sessions.end_session(caller.session_id, caller.user_id)


@ns.route("/logout-all")
class LogoutAll(Resource):
    @login_check
    @log_record
    @returns(ns, description="Every session ended")
    @fails(ns, 503)
    def post(self):
        """End every session of the user, on every process and host."""
        sessions.end_all_sessions(auth.current_identity().user_id)


@ns.route("/sessions")
class Sessions(Resource):
    @login_check
    @returns(ns, session_model, as_list=True)
    @fails(ns, 503)
    def get(self):
        """Your open sessions, oldest first."""
        caller = auth.current_identity()
        return [{**s, "current": s["id"] == caller.session_id} for s in sessions.list_sessions(caller.user_id)]


@ns.route("/sessions/<string(maxlength=64):session_id>")
@ns.param("session_id", "a session id from GET /auth/sessions", maxLength=64)
class SessionItem(Resource):
    @login_check
    @returns_nothing(ns, "The session ended")
    @fails(ns, 404, 503)
    def delete(self, session_id: str):
        """End one of your sessions."""
        if not sessions.end_session(session_id, auth.current_identity().user_id):
            raise NotFound("No such session.")


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
    @returns(ns, description="Reset; every session of the user ended")
    @fails(ns, 503)
    def post(self):
        """Reset a forgotten password with {phone, sms_code or sms_ticket} or {email, email_code}."""
        body = ns.payload
        if body.get("email"):
            accounts.reset_password_by_email(body["email"], body.get("email_code") or "", body["new_password"])
            return
        if not body.get("phone"):
            raise InvalidField("Give phone with sms_code or sms_ticket, or email with email_code.", field="phone")
        accounts.reset_password_by_sms(body["phone"], body["new_password"], sms_code=body.get("sms_code"),
                                       sms_ticket=body.get("sms_ticket"))
