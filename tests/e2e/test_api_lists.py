"""Lists and statements over HTTP on SQLite and PostgreSQL: pages return each row exactly once in
a stable order, filters, an investor reads only its own statement, bad cursors and limits are
422, CSV exports carry the same numbers as the JSON."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from adapters.api.listing import (
    AssetPage,
    DistributionPage,
    InvestmentPage,
    InvestorPage,
    ProposalPage,
    StatementPage,
    csv_lines,
    encode_cursor,
)
from tests.e2e.conftest import ASSET_ID, Api, assert_problem

OTHER = "WATER-02"


def scenario(api: Api) -> dict[str, Any]:
    """Two assets; alice, bob, carol hold ASSET_ID; every kind of movement happens to alice."""
    api.open_asset(max_holders=5)
    api.open_asset(asset_id=OTHER)
    for investor_id, country in (("alice", "ID"), ("bob", "SG"), ("carol", "ID"), ("dave", "SG")):
        api.onboard(investor_id, country)
    api.onboard("erin", kyc="pending")
    ids: dict[str, Any] = {"investment": api.holding(ASSET_ID, "alice", 70)}
    api.holding(ASSET_ID, "bob", 20)
    api.holding(ASSET_ID, "carol", 10)
    api.holding(OTHER, "alice", 5)
    api.invest("dave", ASSET_ID, 300_000)  # stays pending
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": 10}
    api.ok("/v1/transfers", transfer)
    api.ok("/v1/transfers", {**transfer, "from_investor_id": "bob", "to_investor_id": "alice", "quantity": 3})
    api.ok(f"/v1/assets/{ASSET_ID}/holders/alice/freeze-tokens", {"quantity": 60})
    api.ok("/v1/transfers", {**transfer, "quantity": 5, "forced": True})  # takes 2 frozen tokens
    api.ok(f"/v1/assets/{ASSET_ID}/holders/alice/unfreeze-tokens", {"quantity": 1})
    api.ok(f"/v1/assets/{ASSET_ID}/holders/alice/freeze")
    api.ok(f"/v1/assets/{ASSET_ID}/holders/alice/unfreeze")
    api.ok("/v1/redemptions", {"asset_id": ASSET_ID, "investor_id": "alice", "quantity": 1})
    distributions = []
    for amount in (1000, 999, 10):
        made = api.ok("/v1/distributions", {"asset_id": ASSET_ID, "amount": amount})
        distributions.append(made["distribution_id"])
    api.ok(f"/v1/distributions/{distributions[0]}/pay")
    api.ok(f"/v1/distributions/{distributions[1]}/pay", {"investor_id": "alice"})
    ids["distributions"] = distributions
    proposal = {"asset_id": ASSET_ID, "title": "=HYPERLINK(1)", "options": ["yes", "no"], "quorum_bps": 1}
    ids["proposals"] = [api.ok("/v1/proposals", proposal)["proposal_id"] for _ in range(3)]
    ids["head"] = api.head()
    return ids


def pages(api: Api, path: str, limit: int, who: str = "admin", **params: Any) -> list[dict[str, Any]]:
    """Every page of a list, following `next_cursor`; each page's as_of_position at least the head."""
    head = api.head()
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": limit, "min_position": head, **params}
        if cursor is not None:
            query["cursor"] = cursor
        response = api.get(path, who=who, **query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor", "as_of_position"}
        assert body["as_of_position"] >= head
        assert len(body["items"]) <= limit
        found.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return found


def items(api: Api, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    return [item for page in pages(api, path, limit, **params) for item in page["items"]]


def test_statement_pages_hold_every_movement_once_with_the_balance_after_it(api: Api) -> None:
    ids = scenario(api)
    path = "/v1/investors/alice/transactions"
    everything = pages(api, path, 500)
    assert len(everything) == 1
    StatementPage.model_validate(everything[0])
    rows = everything[0]["items"]
    for limit in (1, 2, 7):
        assert items(api, path, limit) == rows
    keys = [(r["position"], r["asset_id"]) for r in rows]
    assert keys == sorted(set(keys))
    assert {r["kind"] for r in rows} == {
        "issuance",
        "transfer_out",
        "transfer_in",
        "forced_transfer_out",
        "tokens_frozen",
        "tokens_unfrozen",
        "address_frozen",
        "address_unfrozen",
        "redemption",
        "dividend_entitlement",
        "dividend_payment",
    }
    forced = next(r for r in rows if r["kind"] == "forced_transfer_out")
    assert (forced["counterparty"], forced["quantity"], forced["frozen_after"]) == ("bob", "5", "58")
    issuance = next(r for r in rows if r["kind"] == "issuance" and r["asset_id"] == ASSET_ID)
    assert (issuance["reference"], issuance["quantity"], issuance["balance_after"]) == (
        ids["investment"],
        "70",
        "70",
    )
    paid = [r for r in rows if r["kind"] == "dividend_payment"]
    assert [r["reference"] for r in paid] == ids["distributions"][:2]
    assert all(r["amount"].isdigit() and r["quantity"] == "0" for r in paid)
    assert all(r["occurred_at"].endswith("Z") for r in rows)
    portfolio = api.read("/v1/investors/alice/portfolio")["positions"]
    for position in portfolio:
        own = [r for r in rows if r["asset_id"] == position["asset_id"]]
        assert own[-1]["balance_after"] == position["quantity"]
        assert own[-1]["frozen_after"] == position["frozen"]
    # filters: one asset, a range of positions (both ends included)
    assert items(api, path, 3, asset_id=OTHER) == [r for r in rows if r["asset_id"] == OTHER]
    low, high = rows[2]["position"], rows[-3]["position"]
    ranged = items(api, path, 2, from_position=low, to_position=high)
    assert ranged == [r for r in rows if low <= r["position"] <= high]


def test_asset_statement_shows_both_sides_of_each_transfer(api: Api) -> None:
    scenario(api)
    rows = items(api, f"/v1/assets/{ASSET_ID}/transactions", 4)
    assert rows == items(api, f"/v1/assets/{ASSET_ID}/transactions", 500)
    keys = [(r["position"], r["investor_id"]) for r in rows]
    assert keys == sorted(set(keys))
    assert {r["asset_id"] for r in rows} == {ASSET_ID}
    first_transfer = [r for r in rows if r["kind"] in ("transfer_out", "transfer_in")][:2]
    assert {(r["investor_id"], r["counterparty"], r["kind"]) for r in first_transfer} == {
        ("alice", "bob", "transfer_out"),
        ("bob", "alice", "transfer_in"),
    }
    cap_table = api.read(f"/v1/assets/{ASSET_ID}/cap-table")["holders"]
    last = {r["investor_id"]: r["balance_after"] for r in rows}
    assert {h["investor_id"]: h["quantity"] for h in cap_table} == {i: q for i, q in last.items() if q != "0"}


def test_an_investor_reads_only_its_own_statement(api: Api) -> None:
    ids = scenario(api)
    # at the head: without min_position alice may not be in the read models yet (a 404)
    own = api.get("/v1/investors/alice/transactions", who="investor:alice", min_position=ids["head"])
    assert own.status_code == 200
    for who in ("investor:bob", "investor:zed"):
        assert_problem(api.get("/v1/investors/alice/transactions", who=who), 403, "forbidden")
        accept = {"Accept": "text/csv", **api.headers(who)}
        response = api.client.get("/v1/investors/alice/transactions", headers=accept)
        assert_problem(response, 403, "forbidden")
    assert_problem(api.get(f"/v1/assets/{ASSET_ID}/transactions", who="investor:alice"), 403, "forbidden")
    assert_problem(api.get("/v1/investors/nobody/transactions"), 404, "not_found")
    assert_problem(api.get("/v1/assets/NOPE-01/transactions"), 404, "not_found")


def test_lists_page_through_every_row_once_with_their_filters(api: Api) -> None:
    ids = scenario(api)
    for n in range(3):
        api.register_asset(asset_id=f"DRAFT-0{n}")
    catalogue = items(api, "/v1/assets", 2)
    AssetPage.model_validate({"items": catalogue, "next_cursor": None, "as_of_position": 0})
    assert [a["asset_id"] for a in catalogue] == sorted([ASSET_ID, OTHER, "DRAFT-00", "DRAFT-01", "DRAFT-02"])
    main = next(a for a in catalogue if a["asset_id"] == ASSET_ID)
    assert (main["total_supply"], main["holder_count"], main["status"]) == ("99", 3, "approved")
    assert [a["asset_id"] for a in items(api, "/v1/assets", 1, status="draft")] == [
        "DRAFT-00",
        "DRAFT-01",
        "DRAFT-02",
    ]
    assert items(api, "/v1/assets", 1, status="tokenized") == []
    assert items(api, "/v1/assets", 3, who="investor:alice") == catalogue

    people = items(api, "/v1/investors", 2)
    InvestorPage.model_validate({"items": people, "next_cursor": None, "as_of_position": 0})
    assert [p["investor_id"] for p in people] == ["alice", "bob", "carol", "dave", "erin"]
    assert [p["investor_id"] for p in items(api, "/v1/investors", 1, country="SG")] == ["bob", "dave"]
    assert [p["investor_id"] for p in items(api, "/v1/investors", 1, kyc_status="pending")] == ["erin"]
    assert [
        p["investor_id"] for p in items(api, "/v1/investors", 9, country="SG", kyc_status="approved")
    ] == [
        "bob",
        "dave",
    ]

    declared = items(api, f"/v1/assets/{ASSET_ID}/distributions", 2)
    DistributionPage.model_validate({"items": declared, "next_cursor": None, "as_of_position": 0})
    assert [d["distribution_id"] for d in declared] == ids["distributions"]
    assert [d["amount"] for d in declared] == ["1000", "999", "10"]
    assert items(api, f"/v1/assets/{OTHER}/distributions", 5) == []

    opened = items(api, f"/v1/assets/{ASSET_ID}/proposals", 2)
    ProposalPage.model_validate({"items": opened, "next_cursor": None, "as_of_position": 0})
    assert [p["proposal_id"] for p in opened] == ids["proposals"]
    assert opened[0]["supply_at_snapshot"] == "99" and opened[0]["status"] == "open"

    placed = items(api, f"/v1/assets/{ASSET_ID}/investments", 1)
    InvestmentPage.model_validate({"items": placed, "next_cursor": None, "as_of_position": 0})
    assert [(p["investor_id"], p["status"]) for p in placed] == [
        ("alice", "settled"),
        ("bob", "settled"),
        ("carol", "settled"),
        ("dave", "pending_payment"),
    ]
    pending = items(api, f"/v1/assets/{ASSET_ID}/investments", 5, status="pending_payment")
    assert [p["investor_id"] for p in pending] == ["dave"]
    assert placed[0]["investment_id"] == ids["investment"] and placed[0]["amount"] == "7000000"


BAD_CURSORS = [
    "garbage!",
    "",
    "x" * 200,
    encode_cursor("investors", "alice"),  # another list's
    encode_cursor("investor-statement", "1", "TOLL"),  # wrong types
    encode_cursor("investor-statement", -1, ASSET_ID),
    encode_cursor("investor-statement", 2**64, ASSET_ID),
    encode_cursor("investor-statement", 1),
]


def test_bad_cursors_and_limits_are_validation_errors(api: Api) -> None:
    scenario(api)
    path = "/v1/investors/alice/transactions"
    for cursor in BAD_CURSORS:
        assert_problem(api.get(path, cursor=cursor), 422, "validation_error")
    assert_problem(api.get(path, cursor="x" * 201), 422, "validation_error")
    for limit in (0, 501, -1, "ten", 1.5, 2**70):
        assert_problem(api.get(path, limit=limit), 422, "validation_error")
    for bad in (
        {"from_position": -1},
        {"to_position": "x"},
        {"asset_id": "lower-case"},
    ):
        assert_problem(api.get(path, **bad), 422, "validation_error")
    for list_path, params in (
        ("/v1/assets", {"status": "gone"}),
        ("/v1/investors", {"kyc_status": "maybe"}),
        ("/v1/investors", {"country": "XX"}),
        (f"/v1/assets/{ASSET_ID}/investments", {"status": "lost"}),
        ("/v1/assets", {"cursor": encode_cursor("assets", 5)}),
        (f"/v1/assets/{ASSET_ID}/distributions", {"cursor": encode_cursor("distributions", "5")}),
        (f"/v1/assets/{ASSET_ID}/proposals", {"cursor": "e30"}),
        (f"/v1/assets/{ASSET_ID}/transactions", {"cursor": encode_cursor("investor-statement", 1, "a")}),
    ):
        assert_problem(api.get(list_path, **params), 422, "validation_error")


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def as_text(row: dict[str, Any]) -> dict[str, str]:
    """A JSON item as the CSV writes it: null empty, everything else its text."""
    return {k: "" if v is None else str(v) for k, v in row.items()}


def test_csv_exports_carry_the_numbers_of_the_json(api: Api) -> None:
    ids = scenario(api)
    csv_accept = {"Accept": "text/csv"}
    for path, params in (
        ("/v1/investors/alice/transactions", {}),
        ("/v1/investors/alice/transactions", {"asset_id": ASSET_ID, "from_position": 10}),
        (f"/v1/assets/{ASSET_ID}/transactions", {}),
    ):
        json_rows = items(api, path, 3, **params)
        response = api.client.get(path, headers={**csv_accept, **api.headers("admin")}, params=params)
        assert csv_rows(response) == [as_text(r) for r in json_rows]
        assert int(response.headers["x-as-of-position"]) >= ids["head"]
        assert "attachment" in response.headers["content-disposition"]
    own = api.client.get(
        "/v1/investors/alice/transactions", headers={**csv_accept, **api.headers("investor:alice")}
    )
    assert len(csv_rows(own)) == len(items(api, "/v1/investors/alice/transactions", 500))

    cap_path = f"/v1/assets/{ASSET_ID}/cap-table"
    for params in ({}, {"as_of": ids["head"] - 10}):
        table = api.read(cap_path, **params)
        response = api.client.get(cap_path, headers={**csv_accept, **api.headers("auditor")}, params=params)
        holders = [as_text(h) for h in table["holders"]]
        assert csv_rows(response) == holders and holders
        assert int(response.headers["x-as-of-position"]) == table["as_of_position"]
    assert_problem(
        api.client.get(cap_path, headers={**csv_accept, **api.headers("investor:alice")}), 403, "forbidden"
    )
    assert_problem(
        api.client.get("/v1/assets/NOPE-01/cap-table", headers={**csv_accept, **api.headers("admin")}),
        404,
        "not_found",
    )


@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(text: str) -> None:
    written = "".join(csv_lines(("title", "quantity"), [[(text, 5)], [('a,b"c', 0)]]))
    parsed = list(csv.reader(io.StringIO(written)))
    assert parsed == [["title", "quantity"], ["'" + text, "5"], ['a,b"c', "0"]]
