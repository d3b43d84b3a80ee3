"""The second factor, under /api/auth/mfa: TOTP enrolment and removal, recovery codes. Changes need a recent
authentication, by the second factor itself while it is on (401 REAUTH_REQUIRED otherwise; POST
/api/auth/reauth)."""

from flask import request
from flask_restx import Namespace, Resource, fields

from app import auth
from app.api.envelope import Reply, accepts, fails, returns, returns_nothing
from app.api.fields import six_digit_code
from app.decorators import log_record, login_check
from app.i18n import _
from app.services import mfa

ns = Namespace("mfa", description="Second factor: TOTP and recovery codes (changes need a recent reauth)")

status_model = ns.model("MfaStatus", {
    "totp": fields.Boolean(required=True, description="whether TOTP is on"),
    "recovery_codes_left": fields.Integer(required=True, example=10),
})
enrolment = ns.model("TotpEnrolment", {
    "secret": fields.String(required=True, description="base32, for typing into an authenticator app"),
    "otpauth_uri": fields.String(required=True, example="otpauth://totp/app:me%40example.com?secret=…&issuer=app"),
    "qr_svg": fields.String(required=True, description="the otpauth URI as a QR code, an SVG document"),
})
confirm_request = ns.model("TotpConfirm", {"code": six_digit_code(required=True)})
recovery_codes = ns.model("RecoveryCodes", {
    "recovery_codes": fields.List(fields.String(example="ABCD-EFGH-JKLM-NPQR"), required=True,
                                  description="10 single-use codes, shown only now"),
})


def _caller() -> tuple:
    """The user and session of a change to the second factor: recent auth, by the second factor itself while it
    is on (a stolen session and password alone cannot turn it off)."""
    user = auth.current_user()
    auth.require_recent_auth(second_factor=user.has_totp)
    return user, auth.current_identity().session_id


@ns.route("")
class Status(Resource):
    @login_check
    @returns(ns, status_model)
    @fails(ns, 503)
    def get(self):
        """Whether TOTP is on, and how many recovery codes are left."""
        return mfa.status(auth.current_user())


@ns.route("/totp")
class Totp(Resource):
    @login_check
    @log_record
    @returns(ns, enrolment, description="Scan the QR code (or type the secret), then confirm with a code")
    @fails(ns, 409, 503)
    def post(self):
        """Start TOTP enrolment (SHA-1, 6 digits, 30 s). TOTP is not on until confirmed. Needs recent auth; 409
        while TOTP is on."""
        user, _session_id = _caller()
        return Reply(mfa.start_totp(user), _("Confirm with a code from your authenticator app"))

    @login_check
    @log_record
    @returns_nothing(ns, "TOTP is off; the recovery codes are void")
    @fails(ns, 404, 503)
    def delete(self):
        """Turn TOTP off. Needs a recent TOTP or recovery code (login/mfa, or reauth with code); 404 when it is not
        on."""
        mfa.disable_totp(*_caller())


@ns.route("/totp/confirm")
class TotpConfirm(Resource):
    @login_check
    @log_record
    @accepts(ns, confirm_request)
    @returns(ns, recovery_codes, description="TOTP is on; every other session ended. Keep these codes safe")
    @fails(ns, 409, 429, 503)
    def post(self):
        """Turn TOTP on with a code from the app; answers the 10 recovery codes, once. Needs recent auth."""
        user, session_id = _caller()
        codes = mfa.confirm_totp(user, ns.payload["code"], session_id, request.remote_addr or "")
        return {"recovery_codes": codes}


@ns.route("/recovery-codes")
class RecoveryCodes(Resource):
    @login_check
    @log_record
    @returns(ns, recovery_codes, description="A new set; the old one is void")
    @fails(ns, 409, 503)
    def post(self):
        """A new set of 10 recovery codes; the old set is void. Needs a recent TOTP or recovery code (login/mfa, or
        reauth with code); 409 while TOTP is off."""
        return {"recovery_codes": mfa.renew_recovery_codes(*_caller())}
