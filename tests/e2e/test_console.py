"""The auditor console without a browser: who may sign in, that no page opens without a session,
that a session ends with its key, that forms need their token, that data is escaped, and that a
table's CSV is the API's data."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from adapters.api.keys import KeyAdmin
from adapters.console import asset_pages, history_pages, investor_pages, pages, session
from ledger.transparency import new_signing_key
from tests.conftest import FakeClock
from tests.e2e.conftest import ASSET_ID, Api

SCRIPT = "<script>alert(1)</script>"


def csrf_of(api: Api) -> str:
    """Opens the sign-in page (which sets the form-token cookie) and returns the form's token."""
    page = api.client.get("/console/sign-in")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    assert api.client.cookies.get(session.CSRF_COOKIE) == found.group(1)
    return found.group(1)


def sign_in(api: Api, key: str) -> httpx.Response:
    return api.client.post(
        "/console/sign-in", data={"csrf": csrf_of(api), "key": key}, follow_redirects=False
    )


def signed_in(api: Api, who: str = "auditor") -> Api:
    response = sign_in(api, api.key(who))
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/assets"
    return api


def csv_rows(api: Api, path: str) -> list[dict[str, str]]:
    """A console table's CSV download, as rows by header."""
    response = api.client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def small_world(api: Api) -> None:
    """An asset with three holders, a transfer and a freeze."""
    api.open_asset()
    for investor_id, quantity in (("alice", 30), ("bob", 20), ("carol", 10)):
        api.onboard(investor_id)
        api.holding(ASSET_ID, investor_id, quantity)
    api.ok("/v1/transfers", {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob",
                             "quantity": "5"})
    api.ok(f"/v1/assets/{ASSET_ID}/holders/carol/freeze-tokens", {"quantity": "4"})
    api.read(f"/v1/assets/{ASSET_ID}")  # the read models have caught up


def console_paths() -> list[str]:
    """Every console page, path parameters filled in."""
    paths: list[str] = []
    routes: list[BaseRoute] = []
    for module in (pages, asset_pages, investor_pages, history_pages):
        routes.extend(module.router.routes)
    for route in routes:
        if isinstance(route, APIRoute) and "GET" in route.methods:
            paths.append(route.path.replace("{asset_id}", ASSET_ID).replace("{investor_id}", "alice"))
    return paths


def test_an_auditor_and_an_admin_sign_in_and_get_an_httponly_strict_session(lite_api: Api) -> None:
    api = lite_api
    for who in ("auditor", "admin"):
        response = sign_in(api, api.key(who))
        assert response.status_code == 303
        cookies = response.headers.get_list("set-cookie")
        cookie = next(c for c in cookies if c.startswith(session.SESSION_COOKIE))
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
        secret = api.key(who).split("_", 2)[2]
        assert secret not in cookie  # the cookie is no API key
        assert api.client.get("/console/assets").status_code == 200
        api.client.cookies.clear()


def test_an_investor_key_cannot_sign_in(lite_api: Api) -> None:
    api = lite_api
    api.onboard("alice")
    response = sign_in(api, api.key("investor:alice"))
    assert response.status_code == 403
    assert "cannot sign in" in response.text
    assert session.SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert api.client.get("/console/assets", follow_redirects=False).status_code == 303


def test_an_unknown_key_cannot_sign_in(lite_api: Api) -> None:
    response = sign_in(lite_api, "lk_0123456789abcdef_not-a-secret")
    assert response.status_code == 401
    assert session.SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_no_console_page_opens_without_a_session(lite_api: Api) -> None:
    api = lite_api
    small_world(api)
    paths = console_paths()
    assert {"/console", "/console/assets", "/console/history", "/console/history/verify"} <= set(paths)
    forged = f"{'0' * 16}.{int(time.time())}.{'0' * 64}"
    for cookies in ({}, {session.SESSION_COOKIE: forged}, {session.SESSION_COOKIE: "garbage"}):
        api.client.cookies.clear()
        for name, value in cookies.items():
            api.client.cookies.set(name, value, path="/console")
        for path in paths:
            if path == "/console/sign-in":
                continue
            response = api.client.get(path, follow_redirects=False)
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"] == "/console/sign-in"
            response = api.client.get(f"{path}?csv=assets", follow_redirects=False)
            assert response.status_code == 303, path


def test_a_revoked_keys_session_is_refused(lite_api: Api) -> None:
    api = signed_in(lite_api)
    assert api.client.get("/console/assets").status_code == 200
    key_id = api.key("auditor").split("_")[1]
    api.services.keys.revoke(key_id)
    response = api.client.get("/console/assets", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in"


def test_an_expired_keys_session_is_refused(lite_api: Api) -> None:
    """The key's validity is judged on the key store's clock, moved past the expiry (with the
    wall clock, a sign-in slower than the key's 2 s of life on a busy machine was refused)."""
    api = lite_api
    clock = FakeClock()
    clock.now = datetime.now(tz=UTC)
    api.services.keys.clock = clock
    admin = KeyAdmin(api.services.ledger, api.services.keys)
    issued = admin.create("auditor", expires_in=timedelta(seconds=2))
    assert issued.key is not None
    assert sign_in(api, issued.key).status_code == 303
    assert api.client.get("/console/assets").status_code == 200
    clock.advance(2.2)
    assert api.client.get("/console/assets", follow_redirects=False).status_code == 303


def test_a_rotated_out_secrets_session_ends_with_its_grace(lite_api: Api) -> None:
    api = signed_in(lite_api)
    key_id = api.key("auditor").split("_")[1]
    admin = KeyAdmin(api.services.ledger, api.services.keys)
    admin.rotate(key_id, timedelta(seconds=60))
    assert api.client.get("/console/assets").status_code == 200  # within the grace
    admin.rotate(key_id, timedelta(0))  # the signed-in secret is now two rotations old
    assert api.client.get("/console/assets", follow_redirects=False).status_code == 303


def test_a_session_older_than_its_lifetime_is_refused(lite_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = signed_in(lite_api)
    assert api.client.get("/console/assets").status_code == 200
    monkeypatch.setattr(session, "SESSION_SECONDS", 0)
    assert api.client.get("/console/assets", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(lite_api: Api) -> None:
    api = signed_in(lite_api)
    token = api.client.cookies.get(session.CSRF_COOKIE)
    response = api.client.post("/console/sign-out", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in"
    assert api.client.cookies.get(session.SESSION_COOKIE) is None
    assert api.client.get("/console/assets", follow_redirects=False).status_code == 303


def test_forms_need_their_token_and_the_consoles_origin(lite_api: Api) -> None:
    api = lite_api
    key = api.key("auditor")
    token = csrf_of(api)
    refused = [
        api.client.post("/console/sign-in", data={"key": key}),
        api.client.post("/console/sign-in", data={"key": key, "csrf": "x" * 43}),
        api.client.post(
            "/console/sign-in", data={"key": key, "csrf": token}, headers={"Origin": "https://evil.example"}
        ),
    ]
    for response in refused:
        assert response.status_code == 403
        assert session.SESSION_COOKIE not in response.headers.get("set-cookie", "")
    signed_in(api)
    response = api.client.post("/console/sign-out", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert api.client.get("/console/assets").status_code == 200  # still signed in


def test_every_page_escapes_data(api: Api) -> None:
    api.open_asset(name=f"Toll road {SCRIPT}")
    api.onboard("alice")
    api.holding(ASSET_ID, "alice", 10)
    api.ok("/v1/proposals", {"asset_id": ASSET_ID, "title": f"Expand {SCRIPT}", "options": ["yes", SCRIPT],
                             "quorum_bps": 1000})
    api.read(f"/v1/assets/{ASSET_ID}")
    signed_in(api)
    pages = [
        "/console/assets",
        f"/console/assets/{ASSET_ID}",
        f"/console/assets/{ASSET_ID}?as_of={SCRIPT}",
        "/console/investors/<script>alert(1)",  # an id no investor can have: a 404 naming it
        "/console/assets/<script>alert(1)",
        f"/console/investors?q={SCRIPT}",
        f"/console/history?investor_id={SCRIPT}&type={SCRIPT}&asset_id={SCRIPT}",
        f"/console/history?asset_id={ASSET_ID}",
    ]
    for path in pages:
        response = api.client.get(path)
        assert response.status_code in (200, 404, 422), (path, response.status_code)
        assert "<script" not in response.text.lower(), path
        assert "&lt;script&gt;" in response.text, path
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in api.client.get("/console/investors/alice").text.lower()


def test_the_csv_of_a_table_is_the_apis_data(api: Api) -> None:
    small_world(api)
    signed_in(api)
    issued = api.read("/v1/audit/events", after=0, limit=1000)["events"]
    past = next(e["position"] for e in issued if e["type"] == "Asset.TokensTransferred") - 1
    for as_of in (None, past):
        query = "" if as_of is None else f"&as_of={as_of}"
        response = api.client.get(f"/console/assets/{ASSET_ID}?csv=cap-table{query}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        params = {} if as_of is None else {"as_of": as_of}
        table = api.read(f"/v1/assets/{ASSET_ID}/cap-table", **params)
        assert rows == [{k: str(h[k]) for k in ("investor_id", "quantity", "frozen", "ownership_bps")}
                        for h in table["holders"]]
    assert api.client.get(f"/console/assets/{ASSET_ID}?csv=nothing").status_code == 404
    last = csv_rows(api, f"/console/assets/{ASSET_ID}?csv=supply-history")[-1]
    asset = api.read(f"/v1/assets/{ASSET_ID}")
    assert (last["total_supply"], int(last["holder_count"])) == (asset["total_supply"], asset["holder_count"])


def test_the_cap_table_as_of_a_date_is_that_days_last(api: Api) -> None:
    small_world(api)
    signed_in(api)
    current = api.client.get(f"/console/assets/{ASSET_ID}?csv=cap-table").text
    assert api.client.get(f"/console/assets/{ASSET_ID}?csv=cap-table&as_of=2999-01-01").text == current
    before = api.client.get(f"/console/assets/{ASSET_ID}?csv=cap-table&as_of=2000-01-01").text
    assert before.splitlines() == ["investor_id,quantity,frozen,ownership_bps"]
    assert api.client.get(f"/console/assets/{ASSET_ID}?as_of=yesterday").status_code == 422


def test_the_statement_lists_every_movement_with_the_balance_after_it(api: Api) -> None:
    small_world(api)
    signed_in(api)
    rows = csv_rows(api, "/console/investors/alice?csv=statement")
    assert [(r["kind"], r["counterparty"], r["quantity"], r["balance_after"]) for r in rows] == [
        ("issuance", "", "30", "30"),
        ("transfer_out", "bob", "5", "25"),
    ]
    portfolio = api.read("/v1/investors/alice/portfolio")
    assert rows[-1]["balance_after"] == portfolio["positions"][0]["quantity"]
    carol = csv_rows(api, "/console/investors/carol?csv=statement")
    assert [(r["kind"], r["balance_after"], r["frozen_after"]) for r in carol] == [
        ("issuance", "10", "0"),
        ("tokens_frozen", "10", "4"),
    ]


def test_the_history_filters_by_asset_investor_type_and_positions(api: Api) -> None:
    small_world(api)
    signed_in(api)
    rows = csv_rows(api, "/console/history?csv=events&investor_id=bob&type=transferred")
    assert [r["type"] for r in rows] == ["Asset.TokensTransferred"]
    position = int(rows[0]["position"])
    around = csv_rows(api, f"/console/history?csv=events&from={position - 1}&to={position}")
    assert [int(r["position"]) for r in around] == [position - 1, position]
    assert api.client.get("/console/history?from=x").status_code == 422
    verified = api.client.get("/console/history/verify")
    assert verified.status_code == 200
    assert "Verified" in verified.text
    assert f">{api.events_checked()}<" in verified.text


def test_verify_proves_an_events_inclusion_in_the_signed_tree_head(api: Api, tmp_path: Path) -> None:
    small_world(api)
    signed_in(api)
    empty = api.client.get("/console/history/verify?position=5")
    assert "No inclusion proof: the Merkle tree is empty" in empty.text
    key = new_signing_key(tmp_path / "audit.pem")
    head = api.services.ledger.transparency.sign_head(key, datetime.now(tz=UTC))
    page = api.client.get("/console/history/verify?position=5")
    assert "Verified:" in page.text
    assert f"matches the signed tree head of {head.tree_size} events" in page.text
    proven = csv_rows(api, "/console/history/verify?position=5&csv=inclusion-proof")
    facts = {r["field"]: r["value"] for r in proven}
    assert (facts["ok"], facts["tree_size"], facts["root"]) == ("yes", str(head.tree_size), head.root)
    proof = api.read("/v1/audit/proofs/inclusion", position=5, tree_size=head.tree_size)
    path = csv_rows(api, "/console/history/verify?position=5&csv=audit-path")
    assert [r["hash"] for r in path] == proof["path"]
    assert facts["leaf_hash"] == proof["leaf_hash"]
    beyond = api.client.get(f"/console/history/verify?position={head.tree_size + 100}")
    assert "No inclusion proof" in beyond.text
