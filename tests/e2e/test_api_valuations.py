"""Valuations and analytics over HTTP (SPEC 4.8): recording and listing valuations, the rules and
roles that refuse one (appending nothing), and what a valuation does to portfolios, the asset and
the history of a portfolio."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import ASSET_ID, Api, assert_problem

DAY = 86_400


def past(api: Api, days: float = 0) -> str:
    """An RFC 3339 time `days` before the ledger's clock."""
    return (api.clock.now - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def valued(api: Api) -> Api:
    """The ledger's clock set a day after the wall clock, which stamps the asset's registration:
    valuations dated between them are neither in the future nor before registration."""
    api.clock.advance((datetime.now(UTC) - api.clock.now).total_seconds() + DAY)
    return api


@pytest.fixture
def priced(api: Api) -> Api:
    """alice holds 100 tokens bought at 100,000 each; bob 50."""
    api.open_asset()
    api.onboard("alice")
    api.onboard("bob")
    api.holding(ASSET_ID, "alice", 100)
    api.holding(ASSET_ID, "bob", 50)
    return valued(api)


def valuation(api: Api, price: Any, when: str, source: str = "KJPP appraisal 2026-11") -> dict[str, Any]:
    return {"price_per_token": price, "valued_at": when, "source": source, "method": "income approach"}


def test_an_admin_records_valuations_and_lists_them_in_pages(priced: Api) -> None:
    api = priced
    first = api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 90_000, past(api, 0.5)), status=201)
    assert set(first) == {"asset_id", "position"}
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, "120000", past(api, 0.25)), status=201)
    page = api.read(f"/v1/assets/{ASSET_ID}/valuations", limit=1)
    assert [v["price_per_token"] for v in page["valuations"]] == ["90000"]
    assert page["valuations"][0]["position"] == first["position"]
    assert page["valuations"][0]["source"] == "KJPP appraisal 2026-11"
    assert page["next_cursor"] is not None and isinstance(page["as_of_position"], int)
    rest = api.read(f"/v1/assets/{ASSET_ID}/valuations", limit=1, cursor=page["next_cursor"])
    assert [v["price_per_token"] for v in rest["valuations"]] == ["120000"]
    assert rest["next_cursor"] is None
    investor = api.get(f"/v1/assets/{ASSET_ID}/valuations", who="investor:alice", min_position=api.head())
    assert investor.status_code == 200


def test_a_valuation_from_a_non_admin_is_forbidden_and_appends_nothing(priced: Api) -> None:
    api = priced
    head = api.head()
    for who in ("auditor", "investor:alice"):
        response = api.post(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 1, past(api)), who=who)
        assert_problem(response, 403, "forbidden")
    assert api.head() == head


@pytest.mark.parametrize(
    ("price", "when"),
    [
        (0, lambda api: past(api, 0.5)),  # no positive price
        (-5, lambda api: past(api, 0.5)),
        (100, lambda api: past(api, -1 / 24)),  # an hour in the future
        (100, lambda api: past(api, 400)),  # before the asset was registered
    ],
)
def test_an_invalid_valuation_is_refused_and_appends_nothing(priced: Api, price: int, when: Any) -> None:
    api = priced
    head = api.head()
    response = api.post(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, price, when(api)))
    assert_problem(response, 422, "invalid_valuation")
    assert api.head() == head


def test_malformed_valuations_are_validation_errors(priced: Api) -> None:
    api = priced
    head = api.head()
    for body in (
        valuation(api, 1.5, past(api)),
        valuation(api, 100, "yesterday"),
        {**valuation(api, 100, past(api)), "source": ""},
        {"price_per_token": 100, "valued_at": past(api)},
    ):
        assert_problem(api.post(f"/v1/assets/{ASSET_ID}/valuations", body), 422, "validation_error")
    assert_problem(api.get(f"/v1/assets/{ASSET_ID}/valuations", cursor="nonsense"), 422, "validation_error")
    assert_problem(api.get("/v1/assets/NOPE-01/valuations"), 404, "not_found")
    assert api.head() == head


def test_a_valuation_moves_value_gain_and_return_and_the_past_stays(priced: Api) -> None:
    api = priced
    before = api.head()
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 90_000, past(api, 0.5)), status=201)
    dividend = api.ok("/v1/distributions", {"asset_id": ASSET_ID, "amount": 300_000})["distribution_id"]
    api.ok(f"/v1/distributions/{dividend}/pay", {"investor_id": "alice"})
    alice = api.read("/v1/investors/alice/portfolio")
    (position,) = alice["positions"]
    assert position["invested_amount"] == "10000000"
    assert position["value"] == "9000000"
    assert position["unrealized_gain"] == "-1000000"
    assert position["dividends_paid"] == "200000"
    assert position["total_return"] == "-800000"
    assert position["xirr_bps"] is None  # every flow on one day
    assert isinstance(position["dividend_yield_bps"], int)
    assert alice["totals"]["total_return"] == "-800000"
    bob = api.read("/v1/investors/bob/portfolio")["positions"][0]
    assert (bob["dividends_pending"], bob["total_return"]) == ("100000", "-500000")
    then = api.read("/v1/investors/alice/portfolio", as_of=before)
    assert then["as_of_position"] == before
    assert then["positions"][0]["value"] == "10000000"
    assert then["positions"][0]["dividends_paid"] == "0"


def test_a_correction_dated_earlier_does_not_replace_the_valuation_in_force(priced: Api) -> None:
    api = priced
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 120_000, past(api, 0.25)), status=201)
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 80_000, past(api, 0.5)), status=201)
    assert api.read("/v1/investors/alice/portfolio")["positions"][0]["value"] == "12000000"
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 110_000, past(api, 0.25)), status=201)
    assert api.read("/v1/investors/alice/portfolio")["positions"][0]["value"] == "11000000"


def test_tokens_received_enter_at_the_valuation_and_leave_at_average_cost(priced: Api) -> None:
    api = priced
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 120_000, past(api, 0.5)), status=201)
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": 30}
    api.ok("/v1/transfers", transfer)
    api.ok("/v1/redemptions", {"asset_id": ASSET_ID, "investor_id": "bob", "quantity": 40})
    alice = api.read("/v1/investors/alice/portfolio")["positions"][0]
    bob = api.read("/v1/investors/bob/portfolio")["positions"][0]
    assert (alice["quantity"], alice["invested_amount"], alice["value"]) == ("70", "7000000", "8400000")
    # bob: 50 at 100,000 and 30 at 120,000 = 8,600,000 for 80; 40 redeemed take half of it.
    assert (bob["quantity"], bob["invested_amount"], bob["value"]) == ("40", "4300000", "4800000")


def test_the_asset_shows_its_valuation_market_cap_and_yield(priced: Api) -> None:
    api = priced
    plain = api.read(f"/v1/assets/{ASSET_ID}")
    assert (plain["latest_valuation"], plain["market_cap"]) == (None, "15000000")
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 90_000, past(api, 0.5)), status=201)
    api.ok("/v1/distributions", {"asset_id": ASSET_ID, "amount": 135_000})
    asset = api.read(f"/v1/assets/{ASSET_ID}")
    assert asset["latest_valuation"]["price_per_token"] == "90000"
    assert asset["market_cap"] == "13500000"
    assert asset["distribution_yield_bps"] == 100


def test_the_history_gives_evenly_spaced_points(priced: Api) -> None:
    api = priced
    start = api.head()
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 90_000, past(api, 0.5)), status=201)
    api.ok(f"/v1/assets/{ASSET_ID}/valuations", valuation(api, 130_000, past(api, 0.25)), status=201)
    end = api.head()
    history = api.read("/v1/investors/alice/portfolio/history", **{"from": start, "to": end, "points": 3})
    assert [p["position"] for p in history["points"]] == [start, (start + end) // 2, end]
    assert [p["value"] for p in history["points"]] == ["10000000", "9000000", "13000000"]
    assert {p["invested_amount"] for p in history["points"]} == {"10000000"}
    today = datetime.now(UTC).date().isoformat()
    by_date = api.read("/v1/investors/alice/portfolio/history", **{"from": today, "to": today})
    assert [p["value"] for p in by_date["points"]] == ["13000000"]
    assert by_date["points"][0]["date"] == today
    bad = api.get("/v1/investors/alice/portfolio/history", **{"from": "soon"})
    assert_problem(bad, 422, "validation_error")
    assert_problem(api.get("/v1/investors/alice/portfolio/history", who="investor:bob"), 403, "forbidden")
