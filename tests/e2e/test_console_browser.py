"""The auditor console in a real browser: Debian's Chromium driven by Playwright against
`ledger serve --workers 2` on the demo store (so a session made by one worker process is accepted
by the other). Screenshots of the main pages go to `LEDGER_SCREENSHOTS` (default
`var/screenshots`); `docs/screenshots` holds two of them for the README."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.e2e.served import Served, create_key, ledger_cli, ledger_env, ledger_serve

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("LEDGER_SCREENSHOTS", "var/screenshots"))
ASSET = "TOLL-JKT-01"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

if not CHROMIUM.exists():
    reason = (
        f"{CHROMIUM} is missing (make test installs Debian's chromium; Playwright's own browser "
        "download is not reachable)"
    )
    if REQUIRE_SERVICES:
        pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


class Demo:
    """The served demo store, its keys, and the API as the numbers' reference."""

    def __init__(self, served: Served, env: dict[str, str], cwd: Path, keys: dict[str, str]) -> None:
        self.served, self.env, self.cwd, self.keys = served, env, cwd, keys
        self.base = served.base

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.base}{path}", params=params, headers={"Authorization": f"Bearer {self.keys['admin']}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    cwd = tmp_path_factory.mktemp("console")
    env = ledger_env(f"sqlite:///{cwd / 'ledger.sqlite3'}")
    for args in (("init",), ("demo",)):
        done = ledger_cli(env, *args, cwd=cwd)
        assert done.returncode == 0, done.stderr
    keys = {role: create_key(env, role, cwd) for role in ("admin", "auditor")}
    keys["second auditor"] = create_key(env, "auditor", cwd)
    done = ledger_cli(env, "keys", "create", "--role", "investor", "--investor-id", "inv-0001", cwd=cwd)
    assert done.returncode == 0, done.stderr
    keys["investor"] = next(w for w in done.stdout.split() if w.startswith("lk_"))
    with ledger_serve(env, cwd, "--workers", "2") as served:
        yield Demo(served, env, cwd, keys)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def new_page(browser: Browser, width: int = 1280, height: int = 900) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    return context.new_page()


def sign_in(page: Page, demo: Demo, key: str) -> None:
    page.goto(f"{demo.base}/console")
    assert page.url.endswith("/console/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Page, name: str, full: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def rows_of(page: Page, table: str) -> list[list[str]]:
    body = page.locator(f"#{table} tbody tr")
    return [body.nth(i).locator("td").all_inner_texts() for i in range(body.count())]


def api_cap_table(demo: Demo, as_of: int | None = None) -> list[list[str]]:
    params = {} if as_of is None else {"as_of": as_of}
    table = demo.api(f"/v1/assets/{ASSET}/cap-table", **params)
    return [[h["investor_id"], h["quantity"], h["frozen"], str(h["ownership_bps"])] for h in table["holders"]]


def focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement.textContent.trim()"))


def test_the_console_works_from_the_keyboard(demo: Demo, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(f"{demo.base}/console")
    # the key field has the focus (autofocus, applied once the page has settled)
    page.wait_for_function("document.activeElement && document.activeElement.id === 'key'")
    page.keyboard.type(demo.keys["auditor"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/assets")
    page.keyboard.press("Tab")
    assert focused(page) == "Skip to content"
    reached = []
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.append(focused(page))
    for wanted in ("Assets", "Investors", "History", "Sign out", ASSET, "CSV of Assets as of position"):
        assert any(text.startswith(wanted) for text in reached), (wanted, reached)
    while focused(page) != ASSET:
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/assets/{ASSET}")
    page.context.close()


def test_an_auditor_walks_through_the_console(demo: Demo, browser: Browser) -> None:
    page = new_page(browser)
    sign_in(page, demo, demo.keys["auditor"])
    page.wait_for_url("**/console/assets")
    assets = rows_of(page, "assets")
    catalogue = {a["asset_id"]: a for a in (demo.api(f"/v1/assets/{r[0]}") for r in assets)}
    assert [r[0] for r in assets] == ["RENT-SG-01", "TOLL-JKT-01", "WATER-SBY-01"]
    for row in assets:
        assert row[6:8] == [catalogue[row[0]]["total_supply"], str(catalogue[row[0]]["holder_count"])]
    shot(page, "assets")

    # An asset, and its cap table moved back through history with the as-of control.
    page.get_by_role("link", name=ASSET).click()
    page.wait_for_url(f"**/console/assets/{ASSET}")
    assert rows_of(page, "cap-table") == api_cap_table(demo)
    assert page.locator("svg[role=img] polyline").count() == 2
    shot(page, "asset")
    head = int(page.locator("#shown-position").inner_text())
    past = head // 2
    page.get_by_role("textbox", name="Cap table as of").fill(str(past))
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**as_of={past}")
    assert page.locator("#shown-position").inner_text() == str(past)
    assert rows_of(page, "cap-table") == api_cap_table(demo, past)
    page.locator("#previous-change").click()
    earlier = int(page.locator("#shown-position").inner_text())
    assert earlier < past
    assert rows_of(page, "cap-table") == api_cap_table(demo, earlier)
    page.get_by_role("textbox", name="Cap table as of").fill(datetime.now(tz=UTC).date().isoformat())
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    assert rows_of(page, "cap-table") == api_cap_table(demo)

    # The CSV of the cap table is the API's.
    with page.expect_download() as download:
        page.locator("section[aria-labelledby=cap-table-title] a.csv").click()
    with Path(download.value.path()).open(newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["investor_id", "quantity", "frozen", "ownership_bps"]
    assert lines[1:] == api_cap_table(demo)

    # An investor who received a transfer: the statement ends at the portfolio's balances.
    moved = demo.api("/v1/audit/events", asset_id=ASSET, limit=1000)["events"]
    receiver = next(e["data"]["to_investor_id"] for e in moved if e["type"] == "Asset.TokensTransferred")
    page.get_by_role("link", name="Investors").click()
    page.get_by_label("Investor id starts with").fill(receiver)
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=receiver, exact=True).click()
    page.wait_for_url(f"**/console/investors/{receiver}")
    statement = rows_of(page, "statement")
    assert any(row[3] == "transfer_in" for row in statement)
    last_balance = {row[2]: row[6] for row in statement}
    portfolio = demo.api(f"/v1/investors/{receiver}/portfolio")["positions"]
    assert last_balance == {p["asset_id"]: p["quantity"] for p in portfolio}
    shot(page, "investor", full=True)

    # The history, filtered, and its verification.
    page.get_by_role("link", name="History").click()
    page.get_by_label("Asset", exact=True).fill("WATER-SBY-01")
    page.get_by_label("Type contains").fill("Transferred")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**type=Transferred**")
    shown = rows_of(page, "events")
    expected = [
        e for e in demo.api("/v1/audit/events", asset_id="WATER-SBY-01", limit=1000)["events"]
        if e["type"] == "Asset.TokensTransferred"
    ][: len(shown)]
    assert shown
    assert [(r[0], r[1], r[6]) for r in shown] == [
        (str(e["position"]), e["type"], e["hash"]) for e in expected
    ]
    shot(page, "history")
    page.get_by_role("button", name="Verify the history").click()
    page.wait_for_url("**/console/history/verify*")
    verified = demo.api("/v1/audit/verify")
    assert page.locator("#verdict").inner_text().startswith("Verified")
    assert [r[1] for r in rows_of(page, "hash-chain")][:3] == [
        "yes", str(verified["events_checked"]), str(verified["head_position"])
    ]
    shot(page, "verify")

    # A phone-width view of an asset, then sign out.
    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[union-attr]
    phone.add_cookies(page.context.cookies())
    small = phone.new_page()
    small.goto(f"{demo.base}/console/assets/{ASSET}")
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
    shot(small, "asset-phone")
    phone.close()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/sign-in")
    page.goto(f"{demo.base}/console/assets")
    assert page.url.endswith("/console/sign-in")
    page.context.close()


def test_a_revoked_keys_session_is_refused(demo: Demo, browser: Browser) -> None:
    page = new_page(browser)
    sign_in(page, demo, demo.keys["second auditor"])
    page.wait_for_url("**/console/assets")
    key_id = demo.keys["second auditor"].split("_")[1]
    done = ledger_cli(demo.env, "keys", "revoke", key_id, cwd=demo.cwd)
    assert done.returncode == 0, done.stderr
    time.sleep(1.2)  # SPEC 5: every process refuses a revoked key within 1 s
    for _ in range(4):  # both worker processes
        page.goto(f"{demo.base}/console/assets")
        assert page.url.endswith("/console/sign-in")
    page.context.close()


def test_an_investor_key_is_refused_at_sign_in(demo: Demo, browser: Browser) -> None:
    page = new_page(browser)
    sign_in(page, demo, demo.keys["investor"])
    assert page.get_by_role("alert").inner_text().startswith("Investor keys cannot sign in")
    page.goto(f"{demo.base}/console/assets")
    assert page.url.endswith("/console/sign-in")
    page.context.close()
