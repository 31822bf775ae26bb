"""Every query of SPEC 5 over HTTP on SQLite and PostgreSQL: body shape, `as_of_position`,
read-your-writes with `min_position`, 503 `projection_lag`, cap tables as of a past position,
compliance views, portfolios, and the audit listing and verification."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapters.api import common
from tests.e2e.conftest import ASSET_ID, Api, assert_problem

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")


def scenario(api: Api) -> dict[str, Any]:
    """alice (ID) 60, bob (SG) 30 then a transfer, carol (MY) 10 frozen; a distribution and a vote."""
    api.open_asset(max_holders=5)
    api.open_asset(asset_id="ACCR-01", accredited_only=True, allowed_countries=["ID", "SG"])
    for investor_id, country in (("alice", "ID"), ("bob", "SG"), ("carol", "MY")):
        api.onboard(investor_id, country)
    ids: dict[str, Any] = {"investment": api.holding(ASSET_ID, "alice", 70)}
    api.holding(ASSET_ID, "bob", 20)
    api.holding(ASSET_ID, "carol", 10)
    ids["before_transfer"] = api.head()
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": 10}
    api.ok("/v1/transfers", transfer)
    api.ok(f"/v1/assets/{ASSET_ID}/holders/carol/freeze-tokens", {"quantity": 4})
    api.ok(f"/v1/assets/{ASSET_ID}/holders/carol/freeze")
    ids["distribution"] = api.ok("/v1/distributions", {"asset_id": ASSET_ID, "amount": 1000})[
        "distribution_id"
    ]
    api.ok(f"/v1/distributions/{ids['distribution']}/pay", {"investor_id": "alice"})
    ids["proposal"] = api.ok(
        "/v1/proposals",
        {"asset_id": ASSET_ID, "title": "Widen the road?", "options": ["yes", "no"], "quorum_bps": 6000},
    )["proposal_id"]
    api.ok(f"/v1/proposals/{ids['proposal']}/votes", {"investor_id": "bob", "option": "no"})
    api.ok("/v1/investors/carol/kyc", {"status": "approved", "expires_at": "2030-01-01T00:00:00Z"})
    ids["head"] = api.head()
    return ids


def read_paths(ids: dict[str, Any]) -> list[str]:
    return [
        f"/v1/assets/{ASSET_ID}",
        f"/v1/assets/{ASSET_ID}/cap-table",
        f"/v1/assets/{ASSET_ID}/compliance",
        "/v1/investors/alice",
        "/v1/investors/alice/portfolio",
        "/v1/investors/alice/compliance",
        f"/v1/investments/{ids['investment']}",
        f"/v1/distributions/{ids['distribution']}",
        f"/v1/proposals/{ids['proposal']}",
    ]


def test_every_read_model_answers_as_of_a_position_at_least_min_position(api: Api) -> None:
    ids = scenario(api)
    for path in read_paths(ids):
        response = api.get(path, min_position=ids["head"])
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        as_of = response.json()["as_of_position"]
        assert isinstance(as_of, int) and ids["head"] <= as_of <= api.head(), (path, as_of)
        plain = api.get(path)  # without min_position: whatever the read models have reached
        assert plain.status_code == 200
        assert 0 <= plain.json()["as_of_position"] <= api.head()


def test_a_read_at_a_commands_position_sees_the_command(api: Api) -> None:
    """No sleeping: `min_position` alone makes each read see the write before it."""
    api.open_asset()
    api.onboard("alice")
    for round_ in range(1, 4):
        placed = api.invest("alice", ASSET_ID, 100_000)
        record = api.get(f"/v1/investments/{placed['investment_id']}", min_position=placed["position"])
        assert (record.status_code, record.json()["status"]) == (200, "pending_payment")
        paid = api.ok(
            f"/v1/investments/{placed['investment_id']}/confirm-payment", {"payment_ref": f"p{round_}"}
        )
        portfolio = api.get("/v1/investors/alice/portfolio", min_position=paid["position"]).json()
        assert portfolio["positions"][0]["quantity"] == str(round_)
        assert portfolio["as_of_position"] >= paid["position"]
        asset = api.get(f"/v1/assets/{ASSET_ID}", min_position=paid["position"]).json()
        assert (asset["total_supply"], asset["holder_count"]) == (str(round_), 1)


def test_min_position_beyond_the_head_is_503_projection_lag(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "WAIT_SECONDS", 0.05)
    ids = scenario(api)
    far = api.head() + 1_000
    for path in read_paths(ids):
        body = assert_problem(api.get(path, min_position=far), 503, "projection_lag")
        assert str(far) in body["detail"]
    assert_problem(api.get(f"/v1/assets/{ASSET_ID}/cap-table", as_of=far), 503, "projection_lag")


def test_asset_record(api: Api) -> None:
    ids = scenario(api)
    asset = api.read(f"/v1/assets/{ASSET_ID}", ids["head"])
    assert asset["asset_id"] == ASSET_ID
    assert (asset["status"], asset["paused"], asset["offering_open"]) == ("approved", False, True)
    assert (asset["total_supply"], asset["holder_count"]) == ("100", 3)
    assert (asset["unit_price"], asset["authorized_supply"], asset["decimals"]) == ("100000", "1000000", 0)
    assert asset["max_holders"] == 5


def test_cap_table_now_and_as_of_a_past_position(api: Api) -> None:
    ids = scenario(api)
    now = api.read(f"/v1/assets/{ASSET_ID}/cap-table", ids["head"])
    assert (now["total_supply"], now["holder_count"]) == ("100", 3)
    # quantity descending, then investor id; ownership in basis points, floored
    assert now["holders"] == [
        {"investor_id": "alice", "quantity": "60", "frozen": "0", "ownership_bps": 6000},
        {"investor_id": "bob", "quantity": "30", "frozen": "0", "ownership_bps": 3000},
        {"investor_id": "carol", "quantity": "10", "frozen": "4", "ownership_bps": 1000},
    ]
    past = api.read(f"/v1/assets/{ASSET_ID}/cap-table", as_of=ids["before_transfer"])
    assert past["as_of_position"] == ids["before_transfer"]
    assert [(h["investor_id"], h["quantity"], h["frozen"]) for h in past["holders"]] == [
        ("alice", "70", "0"),
        ("bob", "20", "0"),
        ("carol", "10", "0"),
    ]
    assert api.read(f"/v1/assets/{ASSET_ID}/cap-table", as_of=0)["holders"] == []


def test_cap_table_ties_sort_by_investor_id_and_bps_floor(api: Api) -> None:
    api.open_asset()
    for investor_id in ("zed", "amy", "kim"):
        api.onboard(investor_id)
        api.holding(ASSET_ID, investor_id, 1)
    table = api.read(f"/v1/assets/{ASSET_ID}/cap-table")
    assert [(h["investor_id"], h["ownership_bps"]) for h in table["holders"]] == [
        ("amy", 3333),
        ("kim", 3333),
        ("zed", 3333),
    ]


def test_compliance_views(api: Api) -> None:
    ids = scenario(api)
    api.ok("/v1/investors/bob/kyc", {"status": "revoked"})
    head = api.head()
    view = api.read(f"/v1/assets/{ASSET_ID}/compliance", head)
    assert (view["holder_count"], view["max_holders"], view["paused"]) == (3, 5, False)
    assert set(view["holders_by_country"]) == {"ID", "SG", "MY"}
    assert view["frozen_holders"] == [
        {"asset_id": ASSET_ID, "investor_id": "carol", "frozen": "4", "address_frozen": True}
    ]
    assert {"kind": "holder_not_eligible", "investor_id": "bob", "detail": "kyc_revoked"} in view["breaches"]

    carol = api.read("/v1/investors/carol/compliance", head)
    assert (carol["kyc_status"], carol["country"], carol["accredited"]) == ("approved", "MY", False)
    assert carol["kyc_expires_at"].startswith("2030-01-01T00:00:00")
    assert carol["eligibility"] == [
        {"asset_id": "ACCR-01", "eligible": False, "reasons": ["country_not_allowed", "not_accredited"]},
        {"asset_id": ASSET_ID, "eligible": True, "reasons": []},
    ]
    assert carol["freezes"] == [
        {"asset_id": ASSET_ID, "investor_id": "carol", "frozen": "4", "address_frozen": True}
    ]
    assert ids["head"] < head


def test_portfolio(api: Api) -> None:
    ids = scenario(api)
    portfolio = api.read("/v1/investors/alice/portfolio", ids["head"])
    assert portfolio["investor_id"] == "alice"
    assert portfolio["positions"] == [
        {
            "asset_id": ASSET_ID,
            "quantity": "60",
            "frozen": "0",
            "invested_amount": "6000000",  # 70 bought, 10 sent away at their average cost
            "dividends_paid": "600",
            "dividends_pending": "0",
            "value": "6000000",
            "unrealized_gain": "0",
            "total_return": "600",
            "dividend_yield_bps": 365,  # 600 over a year's average of 6,000,000 for one day
            "xirr_bps": None,  # every flow on one day
        }
    ]
    carol = api.read("/v1/investors/carol/portfolio", ids["head"])["positions"][0]
    assert (carol["frozen"], carol["dividends_paid"], carol["dividends_pending"]) == ("4", "0", "100")


def test_investment_distribution_and_proposal_records(api: Api) -> None:
    ids = scenario(api)
    investment = api.read(f"/v1/investments/{ids['investment']}", ids["head"])
    assert {k: investment[k] for k in ("investor_id", "asset_id", "status", "amount", "quantity")} == {
        "investor_id": "alice",
        "asset_id": ASSET_ID,
        "status": "settled",
        "amount": "7000000",
        "quantity": "70",
    }
    assert (investment["accepted_amount"], investment["refund_amount"]) == ("7000000", "0")
    distribution = api.read(f"/v1/distributions/{ids['distribution']}", ids["head"])
    assert distribution["amount"] == "1000"
    assert isinstance(distribution["record_position"], int)
    assert distribution["entitlements"] == [
        {"investor_id": "alice", "amount": "600", "paid": True},
        {"investor_id": "bob", "amount": "300", "paid": False},
        {"investor_id": "carol", "amount": "100", "paid": False},
    ]
    proposal = api.read(f"/v1/proposals/{ids['proposal']}", ids["head"])
    assert proposal["status"] == "open"
    assert isinstance(proposal["snapshot_position"], int)
    assert proposal["tally"] == {"yes": "0", "no": "30"}
    assert (proposal["votes_cast_weight"], proposal["quorum_reached"], proposal["result"]) == (
        "30",
        False,
        None,
    )


def test_audit_events_paging_and_filters(api: Api) -> None:
    scenario(api)
    head = api.head()
    # A filtered page after the first knows a stream begun on an earlier page from the read
    # models only: with them at the head, what the pages hold does not depend on the runner.
    api.read(f"/v1/assets/{ASSET_ID}", head)
    everything = api.get("/v1/audit/events", limit=1000).json()
    events = everything["events"]
    assert [e["position"] for e in events] == sorted({e["position"] for e in events})
    assert events[-1]["position"] == head == everything["next_after"]
    for event in events:
        fields = {"position", "stream_id", "version", "type", "occurred_at", "actor", "data", "hash"}
        assert set(event) == fields
        assert re.fullmatch(r"[0-9a-f]{64}", event["hash"])
    assert events[0]["type"] == "Asset.Registered"
    assert events[0]["data"]["unit_price"] == "100000"

    def page_through(**filters: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        for _ in range(200):
            page = api.get("/v1/audit/events", after=after, limit=3, **filters).json()
            assert len(page["events"]) <= 3
            found.extend(page["events"])
            if page["next_after"] == after:
                return found
            assert page["next_after"] > after
            after = page["next_after"]
        raise AssertionError("paging did not end")

    assert page_through() == events
    in_asset = page_through(asset_id="ACCR-01")
    assert [e["type"] for e in in_asset] == ["Asset.Registered", "Asset.Approved", "Asset.OfferingOpened"]
    for_carol = page_through(investor_id="carol")
    related = {"Investor", "WalletClaim", "Investment", "Distribution", "Proposal"}
    assert for_carol
    assert all("carol" in str(e["data"]) or e["type"].split(".")[0] in related for e in for_carol)
    assert {"Investor.Registered", "Asset.TokensFrozen", "Asset.AddressFrozen"} <= {
        e["type"] for e in for_carol
    }
    assert [e for e in events if e in for_carol] == for_carol
    past_head = api.get("/v1/audit/events", after=head).json()
    assert past_head == {"events": [], "next_after": head}


def test_audit_verify(api: Api) -> None:
    scenario(api)
    verify = api.get("/v1/audit/verify").json()
    assert verify["ok"] is True
    assert verify["events_checked"] == verify["head_position"] == api.head()
    assert re.fullmatch(r"[0-9a-f]{64}", verify["head_hash"])
    assert verify["first_invalid_position"] is None
    last = api.get("/v1/audit/events", after=api.head() - 1).json()["events"][0]
    assert last["hash"] == verify["head_hash"]


def test_timestamps_are_rfc3339_utc(api: Api, request: pytest.FixtureRequest) -> None:
    ids = scenario(api)
    proposal = api.ok(
        "/v1/proposals",
        {
            "asset_id": ASSET_ID,
            "title": "t",
            "options": ["a", "b"],
            "quorum_bps": 1,
            "closes_at": "2031-01-01T07:00:00+07:00",
        },
    )
    head = api.head()
    stamps = {
        "occurred_at": api.get("/v1/audit/events", limit=1).json()["events"][0]["occurred_at"],
        "investor_compliance.kyc_expires_at": api.read("/v1/investors/carol/compliance", head)[
            "kyc_expires_at"
        ],
        "investor.registered_at": api.read("/v1/investors/carol", head)["registered_at"],
        "investor.kyc_expires_at": api.read("/v1/investors/carol", head)["kyc_expires_at"],
        "investment.placed_at": api.read(f"/v1/investments/{ids['investment']}", head)["placed_at"],
        "proposal.closes_at": api.read(f"/v1/proposals/{proposal['proposal_id']}", head)["closes_at"],
    }
    wrong = {name: value for name, value in stamps.items() if not RFC3339_UTC.fullmatch(str(value))}
    assert not wrong, wrong


def test_tally_weights_are_strings_whatever_the_options_are_called(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    api.onboard("alice")
    api.holding(ASSET_ID, "alice", 5)
    created = api.ok(
        "/v1/proposals",
        {"asset_id": ASSET_ID, "title": "t", "options": ["position", "other"], "quorum_bps": 1},
    )
    voted = api.ok(
        f"/v1/proposals/{created['proposal_id']}/votes", {"investor_id": "alice", "option": "position"}
    )
    assert api.read(f"/v1/proposals/{created['proposal_id']}", voted["position"])["tally"] == {
        "position": "5",
        "other": "0",
    }


def test_holder_counts_by_country_are_numbers_like_holder_count(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    api.onboard("alice")
    api.holding(ASSET_ID, "alice", 5)
    view = api.read(f"/v1/assets/{ASSET_ID}/compliance")
    assert view["holder_count"] == 1
    assert view["holders_by_country"] == {"ID": 1}


def test_audit_filters_keep_every_event_of_the_assets_and_investors_resources(lite_api: Api) -> None:
    api = lite_api
    scenario(api)
    by_asset = api.get("/v1/audit/events", limit=1000, asset_id=ASSET_ID).json()["events"]
    assert {"Investment.PaymentConfirmed", "Distribution.EntitlementsPaid", "Proposal.VoteCast"} <= {
        e["type"] for e in by_asset
    }
    by_alice = api.get("/v1/audit/events", limit=1000, investor_id="alice").json()["events"]
    assert "Investment.PaymentConfirmed" in {e["type"] for e in by_alice}
