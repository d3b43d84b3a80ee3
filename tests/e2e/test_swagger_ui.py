"""Swagger UI in headless Debian Chromium: it loads from the server alone and shows and runs the operations."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
import requests
from conftest import service_missing

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        service_missing("Chromium", FileNotFoundError(CHROMIUM))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def server(live_server, test_settings):
    """A live server with one account in its database."""
    from app import create_app
    from app.extensions import db
    from app.services.users import create_user

    server = live_server()
    app = create_app(test_settings)
    with app.app_context():
        create_user("+8613800138000", "correct horse battery", "n")
        db.engine.dispose()
    return server


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(5000)
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname))
    page.goto(f"{server.url}/api/")
    page.wait_for_selector(".swagger-ui .info .title")
    yield page, hosts
    context.close()


def expand_all(page) -> None:
    closed = page.locator(".opblock-tag-section:not(.is-open) .opblock-tag")
    for _ in range(closed.count()):
        closed.first.click()  # the opened one leaves the selection


def test_swagger_ui_shows_every_operation(page):
    page, hosts = page
    assert "Flask-RESTX Starter API" in page.locator(".swagger-ui .info .title").inner_text()
    expand_all(page)
    summaries = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/health", "/health/live", "/common/sms/send", "/common/sms/verify"} <= {s.strip() for s in summaries}
    assert hosts == {"127.0.0.1"}, f"the page fetched from other hosts: {hosts}"
    locked = page.locator(".opblock").filter(has_text="/users/me").first.locator(".authorization__btn")
    public = page.locator(".opblock").filter(has_text="/health/live").first.locator(".authorization__btn")
    assert (locked.count(), public.count()) == (1, 0)


def test_authorize_offers_the_token_field(page):
    page, _ = page
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    modal.wait_for()
    assert "token" in modal.inner_text()
    assert modal.locator("input").count() >= 1


def try_it_out(page, path: str):
    """Open the GET operation on ``path``, press Try it out and Execute; the operation's locator."""
    expand_all(page)
    operation = page.locator(".opblock-get").filter(has_text=path).first
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    operation.locator("tr.response .response-col_status").first.wait_for()
    return operation


def test_try_it_out_runs_an_operation(page):
    page, _ = page
    operation = try_it_out(page, "/health/live")
    assert operation.locator("tr.response .response-col_status").first.inner_text().strip().startswith("200")


def test_authorize_with_a_token_then_get_users_me(page, server):
    page, _ = page
    login = requests.post(f"{server.url}/api/auth/login", timeout=10,
                          json={"account": "13800138000", "password": "correct horse battery"})
    token = login.json()["data"]["token"]
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    modal.locator("input").first.fill(token)
    modal.locator("button.authorize").first.click()
    modal.locator("button.btn-done").click()
    operation = try_it_out(page, "/users/me")
    assert operation.locator("tr.response .response-col_status").first.inner_text().strip().startswith("200")
    assert "+8613800138000" in operation.locator(".response-col_description .microlight").first.inner_text()


def test_try_it_out_uploads_a_file(page, server, tmp_path):
    page, _ = page
    login = requests.post(f"{server.url}/api/auth/login", timeout=10,
                          json={"account": "13800138000", "password": "correct horse battery"})
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    modal.locator("input").first.fill(login.json()["data"]["token"])
    modal.locator("button.authorize").first.click()
    modal.locator("button.btn-done").click()
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    expand_all(page)
    operation = page.locator(".opblock-post").filter(has_text="/files/").first
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("input[type=file]").set_input_files(str(picture))
    operation.locator("button.execute").click()
    status = operation.locator("tr.response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip().startswith("201")
    listed = requests.get(f"{server.url}/api/files/", headers={"token": login.json()["data"]["token"]}, timeout=5)
    assert [f["filename"] for f in listed.json()["data"]["items"]] == ["picture.png"]
