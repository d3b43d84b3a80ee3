"""Common operations: SMS verification codes."""

from flask import request
from flask_restx import Namespace, Resource, fields

from app.api.envelope import accepts, fails, public, returns
from app.api.fields import Phone, six_digit_code
from app.decorators import log_record
from app.services import sms
from app.services.phones import normalize_phone

ns = Namespace("common", description="SMS verification codes")


PHONE = Phone(required=True, example="13800138000",
              description="11-digit mainland mobile number, or E.164 (+ and 8 to 15 digits)")
PURPOSE = fields.String(required=True, enum=list(sms.PURPOSES), max_length=32, example="register")

send_request = ns.model("SmsSendRequest", {"phone": PHONE, "purpose": PURPOSE})
send_reply = ns.model("SmsSent", {
    "expires_in": fields.Integer(required=True, example=300, description="seconds the code stays valid"),
    "resend_after": fields.Integer(required=True, example=60, description="seconds before another code"),
})
verify_request = ns.model("SmsVerifyRequest", {
    "phone": PHONE,
    "purpose": PURPOSE,
    "code": six_digit_code(required=True),
})
verify_reply = ns.model("SmsTicket", {
    "sms_ticket": fields.String(required=True, description="single-use proof of the phone, for register etc."),
    "expires_in": fields.Integer(required=True, example=600),
})


@ns.route("/sms/send")
class SmsSend(Resource):
    @public
    @log_record
    @accepts(ns, send_request)
    @returns(ns, send_reply, description="The code was sent")
    @fails(ns, 404, 409, 429, 502, 503)
    def post(self) -> dict:
        """Send a 6-digit code. 409 for register with a registered phone; 404 for login or reset with an
        unknown one; 429 inside the resend cooldown or over a daily cap (see Retry-After)."""
        payload = ns.payload
        return sms.send_code(normalize_phone(payload["phone"]), payload["purpose"], request.remote_addr or "")


@ns.route("/sms/verify")
class SmsVerify(Resource):
    @public
    @log_record
    @accepts(ns, verify_request)
    @returns(ns, verify_reply, description="The code was right and is used up")
    @fails(ns, 503)
    def post(self) -> dict:
        """Trade the code for an sms_ticket. A wrong code is 400 with field "code"; 5 wrong tries void it."""
        payload = ns.payload
        return sms.verify_code(normalize_phone(payload["phone"]), payload["purpose"], payload["code"])
