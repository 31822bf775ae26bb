"""`/docs` works with no internet: Debian's Chromium, driven by Playwright, loads the page from a
real server (uvicorn on a free port) while every request to a host other than this machine is
refused, and Swagger UI renders every operation of the document (SPEC 5, amendments).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from tests.conftest import REQUIRE_SERVICES
from tests.e2e.conftest import Api
from tests.e2e.served import free_port

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture
def server(lite_api: Api) -> Iterator[str]:
    """The app of `lite_api` served by uvicorn in a thread; its base URL."""
    port = free_port()
    config = uvicorn.Config(lite_api.client.app, host="127.0.0.1", port=port, log_level="warning")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, name="uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not served.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield base
    finally:
        served.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def chromium() -> Iterator[object]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (`make test` installs Debian's chromium where apt-get exists)"
        if REQUIRE_SERVICES:
            pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_the_docs_render_every_operation_with_no_internet(server: str, chromium: object) -> None:
    from playwright.sync_api import Browser, Route

    assert isinstance(chromium, Browser)
    document = httpx.get(f"{server}/openapi.json", timeout=30).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    refused: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    page = chromium.new_page()
    page.route("**/*", local_only)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server}/docs", wait_until="networkidle")
    page.wait_for_selector(".opblock", timeout=30_000)

    assert page.locator(".opblock").count() == operations
    assert page.locator(".errors-wrapper").count() == 0  # Swagger UI read the document
    assert page.locator("button.authorize").count() == 1  # the bearer API key is declared
    assert page.get_by_text("/v1/assets/{asset_id}/cap-table", exact=True).count() == 1

    cap_table = page.locator("#operations-assets-get_cap_table")
    cap_table.locator(".opblock-summary").click()
    cap_table.locator(".responses-wrapper").wait_for(timeout=10_000)
    shown = cap_table.locator(".responses-wrapper").inner_text()
    assert "ownership_bps" in shown and "403" in shown  # the success body and a problem

    assert refused == [] and errors == []
