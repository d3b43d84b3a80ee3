"""Swagger UI in headless Debian Chromium: it loads from the server alone and shows and runs the operations."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
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
def page(browser, live_server):
    server = live_server()
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


def test_authorize_offers_the_token_field(page):
    page, _ = page
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    modal.wait_for()
    assert "token" in modal.inner_text()
    assert modal.locator("input").count() >= 1


def test_try_it_out_runs_an_operation(page):
    page, _ = page
    expand_all(page)
    operation = page.locator(".opblock").filter(has_text="/health/live").first
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator("tr.response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip().startswith("200")
