"""Swagger UI in headless Chromium: a person turns TOTP on and logs in with it, every request made from the page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fixtures.accounts import PASSWORD, Authenticator
from tests.fixtures.swagger_ui import SWAGGER_PHONE, authorize, execute

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
SVG = "{http://www.w3.org/2000/svg}svg"


def test_turn_totp_on_then_log_in_with_a_code_all_from_swagger_ui(visit):
    page = visit.page
    status, body = execute(page, "post", "/auth/login", account=SWAGGER_PHONE, password=PASSWORD)
    assert status == 200, body
    first_token = body["data"]["token"]
    authorize(page, first_token)

    status, body = execute(page, "post", "/auth/mfa/totp")
    assert status == 200, body
    enrolment = body["data"]
    assert ET.fromstring(enrolment["qr_svg"]).tag == SVG, enrolment["qr_svg"][:200]
    assert parse_qs(urlsplit(enrolment["otpauth_uri"]).query)["secret"] == [enrolment["secret"]]
    app = Authenticator(enrolment["secret"])

    status, body = execute(page, "post", "/auth/mfa/totp/confirm", code=app.code())
    assert status == 200, body
    recovery_codes = body["data"]["recovery_codes"]
    assert len(set(recovery_codes)) == 10, recovery_codes

    status, body = execute(page, "post", "/auth/logout")
    assert status == 200, body

    status, body = execute(page, "post", "/auth/login", account=SWAGGER_PHONE, password=PASSWORD)
    assert status == 200, body
    challenge = body["data"]
    assert challenge["mfa_required"] is True and "token" not in challenge, challenge

    status, body = execute(page, "post", "/auth/login/mfa", mfa_ticket=challenge["mfa_ticket"], code=app.code())
    assert status == 200, body
    token = body["data"]["token"]
    me = requests.get(f"{visit.server.url}/api/users/me", headers={"token": token}, timeout=5)
    assert me.status_code == 200 and me.json()["data"]["phone"] == SWAGGER_PHONE, me.text
    old = requests.get(f"{visit.server.url}/api/users/me", headers={"token": first_token}, timeout=5)
    assert old.status_code == 401, "the session that was logged out still works"
