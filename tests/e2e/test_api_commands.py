"""Every command of SPEC 5 over HTTP on SQLite and PostgreSQL: status, body shape, `position`,
exact integers, the effect seen by a read at that position, and Idempotency-Key."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from ledger.domain.values import wallet as checksummed
from tests.e2e.conftest import ASSET_ID, Api, assert_problem, running_api
from tests.support import wallet_for


def is_position(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def assert_command(api: Api, body: dict[str, Any], **expected: Any) -> int:
    """A command response: the expected fields, and `position` = the head it left."""
    assert is_position(body["position"]), body
    assert body["position"] == api.head()
    for name, value in expected.items():
        assert body[name] == value, (name, body)
    return int(body["position"])


def test_asset_commands(api: Api) -> None:
    response = api.post("/v1/assets", {"asset_id": ASSET_ID, **_terms()})
    assert response.status_code == 201
    assert set(response.json()) == {"asset_id", "position"}
    registered = assert_command(api, response.json(), asset_id=ASSET_ID)

    approved = assert_command(api, api.ok(f"/v1/assets/{ASSET_ID}/approve"), asset_id=ASSET_ID)
    assert approved > registered
    assert_command(api, api.ok(f"/v1/assets/{ASSET_ID}/offering", {"open": True}))
    token = {"chain_id": 84532, "token_address": wallet_for("token"), "identity_registry": wallet_for("ir")}
    bound = assert_command(api, api.ok(f"/v1/assets/{ASSET_ID}/token", token), asset_id=ASSET_ID)
    asset = api.read(f"/v1/assets/{ASSET_ID}", bound)
    assert asset["status"] == "tokenized"
    assert asset["token"] == {
        "chain_id": 84532,
        "token_address": checksummed(wallet_for("token")),
        "identity_registry": checksummed(wallet_for("ir")),
    }
    assert asset["offering_open"] is True

    paused = assert_command(api, api.ok(f"/v1/assets/{ASSET_ID}/pause"))
    assert api.read(f"/v1/assets/{ASSET_ID}", paused)["paused"] is True
    unpaused = assert_command(api, api.ok(f"/v1/assets/{ASSET_ID}/unpause"))
    assert api.read(f"/v1/assets/{ASSET_ID}", unpaused)["paused"] is False

    api.onboard("alice")
    api.holding(ASSET_ID, "alice", 10)
    holder = f"/v1/assets/{ASSET_ID}/holders/alice"
    frozen = assert_command(api, api.ok(f"{holder}/freeze-tokens", {"quantity": "4"}), asset_id=ASSET_ID)
    assert api.read(f"/v1/assets/{ASSET_ID}/cap-table", frozen)["holders"][0]["frozen"] == "4"
    thawed = assert_command(api, api.ok(f"{holder}/unfreeze-tokens", {"quantity": 1}))
    assert api.read("/v1/investors/alice/portfolio", thawed)["positions"][0]["frozen"] == "3"
    address = assert_command(api, api.ok(f"{holder}/freeze"))
    compliance = api.read(f"/v1/assets/{ASSET_ID}/compliance", address)
    assert compliance["frozen_holders"] == [
        {"asset_id": ASSET_ID, "investor_id": "alice", "frozen": "3", "address_frozen": True}
    ]
    released = assert_command(api, api.ok(f"{holder}/unfreeze"))
    compliance = api.read(f"/v1/assets/{ASSET_ID}/compliance", released)
    assert compliance["frozen_holders"] == [
        {"asset_id": ASSET_ID, "investor_id": "alice", "frozen": "3", "address_frozen": False}
    ]
    closed = assert_command(api, api.ok(f"/v1/assets/{ASSET_ID}/offering", {"open": False}))
    assert api.read(f"/v1/assets/{ASSET_ID}", closed)["offering_open"] is False


def test_investor_commands(api: Api) -> None:
    body = {"investor_id": "inv.01_a-b", "country": "SG", "wallet": wallet_for("w1"), "accredited": True}
    response = api.post("/v1/investors", body)
    assert response.status_code == 201
    assert set(response.json()) == {"investor_id", "position"}
    assert_command(api, response.json(), investor_id="inv.01_a-b")
    path = "/v1/investors/inv.01_a-b"
    kyc = api.ok(f"{path}/kyc", {"status": "approved", "expires_at": "2030-06-30T17:00:00+07:00"})
    assert_command(api, kyc, investor_id="inv.01_a-b")
    assert_command(api, api.ok(f"{path}/wallets", {"wallet": wallet_for("w2").upper().replace("0X", "0x")}))
    recovered = assert_command(
        api, api.ok(f"{path}/recover", {"lost_wallet": wallet_for("w1"), "new_wallet": wallet_for("w3")})
    )
    record = api.read(path, recovered)
    assert record["investor_id"] == "inv.01_a-b"
    assert (record["country"], record["accredited"], record["kyc_status"]) == ("SG", True, "approved")
    assert record["kyc_expires_at"].startswith("2030-06-30T10:00:00")
    assert record["wallets"] == [checksummed(wallet_for("w2")), checksummed(wallet_for("w3"))]
    assert record["lost_wallets"] == [checksummed(wallet_for("w1"))]
    revoked = assert_command(api, api.ok(f"{path}/kyc", {"status": "revoked"}))
    assert api.read(f"{path}/compliance", revoked)["kyc_status"] == "revoked"


def test_investment_commands(api: Api) -> None:
    api.open_asset()
    api.open_asset(asset_id="FRAC-01", decimals=2, unit_price=100_000, min_investment=1)
    api.onboard("alice")
    response = api.post("/v1/investments", {"investor_id": "alice", "asset_id": ASSET_ID, "amount": 250_000})
    assert response.status_code == 201
    placed = response.json()
    assert set(placed) == {
        "investment_id",
        "status",
        "quantity",
        "accepted_amount",
        "refund_amount",
        "position",
    }
    # quantity = amount * 10**decimals // unit_price; the rest of the money is refunded
    assert_command(
        api, placed, status="pending_payment", quantity="2", accepted_amount="200000", refund_amount="50000"
    )
    fractional = api.invest("alice", "FRAC-01", "123456")  # a string of digits is accepted too
    assert (fractional["quantity"], fractional["accepted_amount"], fractional["refund_amount"]) == (
        "123",
        "123000",
        "456",
    )
    investment_id = placed["investment_id"]
    record = api.read(f"/v1/investments/{investment_id}", placed["position"])
    assert (record["status"], record["amount"], record["quantity"]) == ("pending_payment", "250000", "2")

    confirmed = api.ok(f"/v1/investments/{investment_id}/confirm-payment", {"payment_ref": "gw-123"})
    assert set(confirmed) == {"investment_id", "status", "position"}
    position = assert_command(api, confirmed, investment_id=investment_id, status="settled")
    record = api.read(f"/v1/investments/{investment_id}", position)
    assert (record["status"], record["payment_ref"]) == ("settled", "gw-123")
    positions = api.read("/v1/investors/alice/portfolio", position)["positions"]
    assert [(p["asset_id"], p["quantity"]) for p in positions] == [(ASSET_ID, "2")]  # pending: no position

    cancelled = api.ok(f"/v1/investments/{fractional['investment_id']}/cancel")
    position = assert_command(api, cancelled, status="cancelled")
    assert api.read(f"/v1/investments/{fractional['investment_id']}", position)["status"] == "cancelled"


def test_transfer_and_redemption_commands(api: Api) -> None:
    api.open_asset()
    for investor_id in ("alice", "bob"):
        api.onboard(investor_id)
    api.holding(ASSET_ID, "alice", 100)
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": "30"}
    response = api.post("/v1/transfers", transfer)
    assert response.status_code == 201
    assert set(response.json()) == {"asset_id", "position"}
    position = assert_command(api, response.json(), asset_id=ASSET_ID)
    table = api.read(f"/v1/assets/{ASSET_ID}/cap-table", position)
    assert [(h["investor_id"], h["quantity"]) for h in table["holders"]] == [("alice", "70"), ("bob", "30")]

    # a forced transfer ignores freezes and releases frozen tokens only as far as needed
    api.ok(f"/v1/assets/{ASSET_ID}/holders/bob/freeze-tokens", {"quantity": 25})
    api.ok(f"/v1/assets/{ASSET_ID}/holders/bob/freeze")
    forced = api.ok(
        "/v1/transfers",
        {**transfer, "from_investor_id": "bob", "to_investor_id": "alice", "quantity": 10, "forced": True},
    )
    table = api.read(f"/v1/assets/{ASSET_ID}/cap-table", assert_command(api, forced))
    assert {h["investor_id"]: (h["quantity"], h["frozen"]) for h in table["holders"]} == {
        "alice": ("80", "0"),
        "bob": ("20", "20"),
    }

    redeemed = api.post("/v1/redemptions", {"asset_id": ASSET_ID, "investor_id": "alice", "quantity": 80})
    assert redeemed.status_code == 201
    position = assert_command(api, redeemed.json(), asset_id=ASSET_ID)
    asset = api.read(f"/v1/assets/{ASSET_ID}", position)
    assert (asset["total_supply"], asset["holder_count"]) == ("20", 1)


def test_distribution_commands(api: Api) -> None:
    api.open_asset()
    for investor_id in ("alice", "bob", "carol"):
        api.onboard(investor_id)
    api.holding(ASSET_ID, "alice", 1)
    api.holding(ASSET_ID, "bob", 1)
    record_position = api.head()
    api.holding(ASSET_ID, "carol", 1)  # after the record position: no entitlement
    response = api.post(
        "/v1/distributions", {"asset_id": ASSET_ID, "amount": "1001", "record_position": record_position}
    )
    assert response.status_code == 201
    assert set(response.json()) == {"distribution_id", "position"}
    declared = response.json()
    assert_command(api, declared)
    path = f"/v1/distributions/{declared['distribution_id']}"
    record = api.read(path, declared["position"])
    assert (record["amount"], record["record_position"]) == ("1001", record_position)
    # largest remainder: 500.5 each, the leftover unit goes to the smaller investor id
    assert record["entitlements"] == [
        {"investor_id": "alice", "amount": "501", "paid": False},
        {"investor_id": "bob", "amount": "500", "paid": False},
    ]
    paid = api.ok(f"{path}/pay", {"investor_id": "bob"})
    assert_command(api, paid, distribution_id=declared["distribution_id"], paid_investor_ids=["bob"])
    rest = api.ok(f"{path}/pay")
    position = assert_command(api, rest, paid_investor_ids=["alice"])
    assert all(e["paid"] for e in api.read(path, position)["entitlements"])
    now = api.ok("/v1/distributions", {"asset_id": ASSET_ID, "amount": 3})  # record position: now
    entitlements = api.read(f"/v1/distributions/{now['distribution_id']}", now["position"])["entitlements"]
    assert [e["amount"] for e in entitlements] == ["1", "1", "1"]
    portfolio = api.read("/v1/investors/alice/portfolio", now["position"])["positions"][0]
    assert (portfolio["dividends_paid"], portfolio["dividends_pending"]) == ("501", "1")


def test_proposal_commands(api: Api) -> None:
    api.open_asset()
    for investor_id in ("alice", "bob"):
        api.onboard(investor_id)
    api.holding(ASSET_ID, "alice", 6)
    api.holding(ASSET_ID, "bob", 4)
    body = {
        "asset_id": ASSET_ID,
        "title": "Extend the concession?",
        "options": ["yes", "no"],
        "quorum_bps": 5000,
        "closes_at": "2030-01-01T00:00:00Z",
    }
    response = api.post("/v1/proposals", body)
    assert response.status_code == 201
    assert set(response.json()) == {"proposal_id", "position"}
    created = response.json()
    snapshot = assert_command(api, created)
    api.holding(ASSET_ID, "bob", 10)  # after the snapshot: no extra weight
    path = f"/v1/proposals/{created['proposal_id']}"
    voted = api.post(f"{path}/votes", {"investor_id": "alice", "option": "yes"})
    assert voted.status_code == 201
    assert_command(api, voted.json(), proposal_id=created["proposal_id"], weight="6")
    assert api.ok(f"{path}/votes", {"investor_id": "bob", "option": "no"})["weight"] == "4"
    closed = api.ok(f"{path}/close")
    position = assert_command(api, closed, proposal_id=created["proposal_id"], result="yes")
    record = api.read(path, position)
    assert record["status"] == "closed"
    assert record["snapshot_position"] == snapshot
    assert record["votes_cast_weight"] == "10"
    assert record["quorum_reached"] is True
    assert record["result"] == "yes"


# ----- Idempotency-Key -----


def test_same_key_and_body_replays_the_first_response_without_new_events(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    body = {"investor_id": "alice", "asset_id": ASSET_ID, "amount": 300_000}
    first = api.post("/v1/investments", body, idem="order-1")
    assert first.status_code == 201
    head, checked = api.head(), api.events_checked()
    for _ in range(2):
        again = api.post("/v1/investments", body, idem="order-1")
        assert (again.status_code, again.json()) == (201, first.json())
    assert (api.head(), api.events_checked()) == (head, checked)
    pause = api.post(f"/v1/assets/{ASSET_ID}/pause", idem="pause-1")
    assert (api.post(f"/v1/assets/{ASSET_ID}/pause", idem="pause-1").json()) == pause.json()
    assert api.head() == pause.json()["position"]
    events = api.get("/v1/audit/events", limit=1000).json()["events"]
    assert sum(e["type"] == "Investment.Placed" for e in events) == 1


def test_same_key_with_another_body_or_command_is_409(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    body = {"investor_id": "alice", "asset_id": ASSET_ID, "amount": 300_000}
    assert api.post("/v1/investments", body, idem="order-2").status_code == 201
    head = api.head()
    assert_problem(
        api.post("/v1/investments", {**body, "amount": 400_000}, idem="order-2"),
        409,
        "idempotency_key_reused",
    )
    assert_problem(api.post(f"/v1/assets/{ASSET_ID}/pause", idem="order-2"), 409, "idempotency_key_reused")
    assert api.head() == head


def test_a_replay_survives_a_restart_of_the_api(api: Api) -> None:
    api.open_asset()
    first = api.post(f"/v1/assets/{ASSET_ID}/pause", idem="restart-1")
    head = api.head()
    with running_api(api.url, api.clock) as restarted:
        restarted.keys.update(api.keys)  # the same caller: idempotency keys are the caller's own
        again = restarted.post(f"/v1/assets/{ASSET_ID}/pause", idem="restart-1")
        assert (again.status_code, again.json()) == (200, first.json())
        assert_problem(
            restarted.post(f"/v1/assets/{ASSET_ID}/unpause", idem="restart-1"), 409, "idempotency_key_reused"
        )
        assert restarted.head() == head


def test_concurrent_requests_with_one_key_make_one_investment(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    body = {"investor_id": "alice", "asset_id": ASSET_ID, "amount": 500_000}
    head = api.head()
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        response = api.post("/v1/investments", body, idem="race-1")
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(responses) == 6
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    # one investment: Investment.Placed and Asset.SupplyReserved
    assert api.head() == head + 2


def test_rejected_and_unauthorised_commands_append_nothing(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    head, checked = api.head(), api.events_checked()
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "alice", "quantity": 1}
    assert_problem(api.post("/v1/transfers", transfer), 422, "same_investor")
    assert_problem(api.post("/v1/transfers", {**transfer, "quantity": 0.5}), 422, "validation_error")
    assert_problem(api.post(f"/v1/assets/{ASSET_ID}/pause", who="auditor"), 403, "forbidden")
    assert_problem(api.post(f"/v1/assets/{ASSET_ID}/pause", who="investor:alice"), 403, "forbidden")
    assert_problem(api.post(f"/v1/assets/{ASSET_ID}/pause", who=None), 401, "unauthorized")
    assert_problem(api.post("/v1/assets/NOPE-1/pause"), 404, "not_found")
    assert (api.head(), api.events_checked()) == (head, checked)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the runner's death
def test_an_accepted_command_never_stalls_the_read_models(api: Api) -> None:
    """A runner that cannot project the event never reaches its position: the read is a 503
    after the fixture's wait (a wait of 0.2 s here made a 503 of a runner that was merely slow)."""
    response = api.post("/v1/assets", {"asset_id": "BIG-01", **_terms(), "max_holders": 10**36})
    if response.status_code == 422:  # refusing such terms up front is a fix too
        assert_problem(response, 422, "validation_error")
        return
    assert response.status_code == 201
    read = api.get("/v1/assets/BIG-01", min_position=response.json()["position"])
    assert read.status_code == 200, read.text
    assert int(read.json()["max_holders"]) == 10**36


def _terms() -> dict[str, Any]:
    return {
        "name": "Jakarta outer ring toll road",
        "symbol": "TJK",
        "decimals": 0,
        "currency": "IDR",
        "unit_price": "100000",
        "authorized_supply": 10**30,
        "min_investment": 100_000,
        "max_investment": "1000000000",
        "max_holders": 100,
        "max_balance": "1000000",
        "allowed_countries": ["ID", "SG"],
        "accredited_only": False,
        "lockup_seconds": 0,
    }
