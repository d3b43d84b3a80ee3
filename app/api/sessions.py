"""Your sessions and account security, under /api/auth: log out, list and end sessions, step-up (reauth), and
the security events of your account."""

from flask import request
from flask_restx import Namespace, Resource, fields

from app import auth
from app.api.envelope import NullableString, Timestamp, accepts, fails, page_of, returns, returns_nothing
from app.api.fields import Alternatives, given_password, page_args, paging_of, six_digit_code
from app.decorators import log_record, login_check
from app.services import security_events, session_control, sessions

ns = Namespace("sessions", description="Your sessions, step-up re-authentication and security events")

session_model = ns.model("Session", {
    "id": fields.String(required=True),
    "created_at": Timestamp(required=True),
    "last_seen_at": Timestamp(required=True),
    "ip": fields.String(required=True),
    "user_agent": fields.String(required=True),
    "current": fields.Boolean(required=True),
})
reauth_request = ns.add_model("Reauth", Alternatives("Reauth", {
    "password": given_password(description="your password; or code"),
    "code": six_digit_code(description="a TOTP code from your authenticator app, when TOTP is on"),
}, example={"password": "correct horse battery"}))
reauth_result = ns.model("ReauthResult", {
    "reauth_expires_in": fields.Integer(required=True, example=600,
                                        description="seconds this session counts as recently authenticated"),
})
event_model = ns.model("SecurityEvent", {
    "id": fields.Integer(required=True),
    "type": fields.String(required=True, enum=list(security_events.TYPES)),
    "at": Timestamp(required=True),
    "ip": fields.String(required=True),
    "user_agent": fields.String(required=True),
    "session_id": NullableString(required=True),
})


@ns.route("/logout")
class Logout(Resource):
    @login_check
    @log_record
    @returns(ns, description="The session ended")
    @fails(ns, 503)
    def post(self):
        """End the current session."""
        caller = auth.current_identity()
        session_control.logout(caller.user_id, caller.session_id)


@ns.route("/logout-all")
class LogoutAll(Resource):
    @login_check
    @log_record
    @returns(ns, description="Every session ended")
    @fails(ns, 503)
    def post(self):
        """End every session of the user, on every process and host. Needs a recent authentication (401
        REAUTH_REQUIRED; POST /auth/reauth): a stolen token alone cannot throw its owner out."""
        auth.require_recent_auth()
        caller = auth.current_identity()
        session_control.logout_all(caller.user_id, caller.session_id)


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
        """End one of your sessions. Ending another than this one needs a recent authentication (401
        REAUTH_REQUIRED; POST /auth/reauth)."""
        caller = auth.current_identity()
        if session_id != caller.session_id:
            auth.require_recent_auth()
        session_control.end_own_session(caller.user_id, session_id)


@ns.route("/reauth")
class Reauth(Resource):
    @login_check
    @log_record
    @accepts(ns, reauth_request)
    @returns(ns, reauth_result, description="This session counts as recently authenticated")
    @fails(ns, 429, 503)
    def post(self):
        """Prove your password (or a TOTP code) again before a sensitive change: changing the email, turning TOTP
        on or off, new recovery codes. Wrong ones count like failed logins (429)."""
        body = ns.payload
        caller = auth.current_identity()
        seconds = session_control.reauth(auth.current_user(), caller.session_id, request.remote_addr or "",
                                         password=body.get("password"), code=body.get("code"))
        return {"reauth_expires_in": seconds}


@ns.route("/events")
class Events(Resource):
    @login_check
    @ns.expect(page_args)
    @returns(ns, page_of(ns, event_model))
    @fails(ns, 400, 503)
    def get(self):
        """Your account's security events, newest first (kept auth.events_ttl_days days)."""
        args = page_args.parse_args()
        return security_events.list_events(auth.current_identity().user_id, paging_of(args))
