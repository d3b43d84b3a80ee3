"""Swagger UI in headless Debian Chromium: it loads from the server alone and shows and runs the operations."""

from __future__ import annotations

import pytest
import requests

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.swagger_ui import (
    LIVE_BODY,
    answered,
    answered_status,
    authorize,
    expand_all,
    operation,
    try_it_out,
)
from tests.fixtures.swagger_ui import SWAGGER_PHONE as PHONE

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def log_in(server) -> str:
    response = requests.post(f"{server.url}/api/auth/login", json={"account": PHONE, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


def test_swagger_ui_shows_the_title_and_the_operations(visit):
    title = requests.get(f"{visit.server.url}/api/swagger.json", timeout=5).json()["info"]["title"]
    assert title in visit.page.locator(".swagger-ui .info .title").inner_text()
    for path in ("/health", "/health/live"):
        assert operation(visit.page, "get", path).is_visible(), f"GET {path} is not shown"
    expand_all(visit.page)
    paths = {path.strip() for path in visit.page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/common/sms/send", "/auth/login", "/users/me", "/files/"} <= paths
    # A lock on the secured operations only.
    assert operation(visit.page, "get", "/users/me").locator(".authorization__btn").count() == 1
    assert operation(visit.page, "get", "/health/live").locator(".authorization__btn").count() == 0


def test_authorize_offers_the_token_field(visit):
    visit.page.locator("button.authorize").first.click()
    modal = visit.page.locator(".modal-ux")
    modal.wait_for()
    text = " ".join(modal.inner_text().split())  # Swagger UI puts a no-break space before "(apiKey)"
    assert "token (apiKey)" in text and "Name: token" in text and "In: header" in text, text
    assert modal.locator("input").count() == 1


def test_try_it_out_runs_an_operation(visit):
    block = try_it_out(visit.page, "get", "/health/live")
    assert answered_status(block).startswith("200")
    assert '"alive": true' in block.locator(LIVE_BODY).first.inner_text()


def test_authorize_with_a_token_then_get_users_me(visit):
    authorize(visit.page, log_in(visit.server))
    block = try_it_out(visit.page, "get", "/users/me")
    assert answered_status(block).startswith("200")
    assert PHONE in block.locator(LIVE_BODY).first.inner_text()


def test_try_it_out_uploads_a_file(visit, tmp_path):
    token = log_in(visit.server)
    authorize(visit.page, token)
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    block = operation(visit.page, "post", "/files/")
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("input[type=file]").set_input_files(str(picture))
    block.locator("button.execute").click()
    assert answered_status(answered(block)).startswith("201")
    listed = requests.get(f"{visit.server.url}/api/files/", headers={"token": token}, timeout=5)
    answer = block.locator(LIVE_BODY).first.inner_text()
    assert [f["filename"] for f in listed.json()["data"]["items"]] == ["picture.png"], f"UI got {answer}; list {listed.text}"
