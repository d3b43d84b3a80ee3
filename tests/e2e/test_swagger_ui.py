"""Swagger UI in headless Debian Chromium: it loads from the server alone and shows and runs the operations."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest
import requests

from tests.fixtures.accounts import PASSWORD
from tests.support import service_missing

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
PHONE = "+8613800138000"


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
        create_user(PHONE, PASSWORD, "n")
        db.engine.dispose()
    return server


class Visit:
    """The Swagger UI page of ``server`` and the hosts of every request it made."""

    def __init__(self, page, server) -> None:
        self.page, self.server, self.urls = page, server, []
        page.on("request", lambda request: self.urls.append(request.url))

    def hosts(self) -> set:
        return {urlsplit(url).hostname for url in self.urls if urlsplit(url).scheme not in ("data", "blob")}


@pytest.fixture
def visit(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(5000)
    visit = Visit(page, server)
    page.goto(f"{server.url}/api/")
    page.wait_for_selector(".swagger-ui .info .title")
    yield visit
    context.close()
    # Every test, whatever it clicked: assets, spec and calls all came from the server itself.
    assert visit.hosts() == {"127.0.0.1"}, f"the page made requests to other hosts: {visit.hosts()}"


def expand_all(page) -> None:
    closed = page.locator(".opblock-tag-section:not(.is-open) .opblock-tag")
    for _ in range(closed.count()):
        closed.first.click()  # the opened one leaves the selection


def operation(page, method: str, path: str):
    """The operation block for ``method path`` (tags expanded first)."""
    expand_all(page)
    return page.locator(f".opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')).first


def authorize(page, token: str) -> None:
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    modal.locator("input").first.fill(token)
    modal.locator("button.authorize").first.click()
    modal.locator("button.btn-done").click()


def log_in(server) -> str:
    response = requests.post(f"{server.url}/api/auth/login", json={"account": PHONE, "password": PASSWORD}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]["token"]


def try_it_out(page, method: str, path: str):
    """Open ``method path``, press Try it out and Execute; the operation's block once the answer shows."""
    block = operation(page, method, path)
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    return answered(block)


# The server's answer, not the documented responses (those rows carry the same classes and show at once).
LIVE_STATUS = ".live-responses-table tr.response .response-col_status"
LIVE_BODY = ".live-responses-table .response-col_description .microlight"


def answered(block):
    """``block`` once the server's answer to Execute is shown."""
    block.locator(LIVE_STATUS).first.wait_for()
    return block


def answered_status(block) -> str:
    return block.locator(LIVE_STATUS).first.inner_text().strip()


def test_swagger_ui_shows_the_title_and_the_operations(visit):
    title = requests.get(f"{visit.server.url}/api/swagger.json", timeout=5).json()["info"]["title"]
    assert title in visit.page.locator(".swagger-ui .info .title").inner_text()
    for path in ("/health", "/health/live"):
        assert operation(visit.page, "get", path).is_visible(), f"GET {path} is not shown"
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
