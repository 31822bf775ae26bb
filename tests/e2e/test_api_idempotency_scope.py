"""SPEC 5 (second edition): idempotency records are scoped to the caller. The same
`Idempotency-Key` from two callers is two commands; a caller's replay returns its own first
response, and another caller's use of the key neither replays it nor blocks its owner."""

from __future__ import annotations

from tests.e2e.conftest import ASSET_ID, Api, assert_problem


def test_the_same_key_from_two_callers_makes_two_commands(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    api.holding(ASSET_ID, "alice", 10)
    api.onboard("bob")
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": 1}
    by_admin = api.post("/v1/transfers", transfer, who="admin", idem="t-1")
    assert by_admin.status_code == 201
    head = api.head()
    by_alice = api.post("/v1/transfers", transfer, who="investor:alice", idem="t-1")
    assert by_alice.status_code == 201
    assert by_alice.json()["position"] > by_admin.json()["position"]  # a command of its own
    assert api.head() > head
    # each caller's replay returns its own first response, with no new events
    head = api.head()
    assert api.post("/v1/transfers", transfer, who="admin", idem="t-1").json() == by_admin.json()
    assert api.post("/v1/transfers", transfer, who="investor:alice", idem="t-1").json() == by_alice.json()
    assert api.head() == head
    cap_table = api.read(f"/v1/assets/{ASSET_ID}/cap-table")
    holders = {h["investor_id"]: h["quantity"] for h in cap_table["holders"]}
    assert holders == {"alice": "8", "bob": "2"}


def test_another_callers_other_body_neither_is_refused_nor_blocks_the_owners_retry(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    api.keys["admin2"] = api.services.keys.create("admin")
    body = {"investor_id": "alice", "asset_id": ASSET_ID, "amount": 300_000}
    first = api.post("/v1/investments", body, who="admin", idem="order-9")
    assert first.status_code == 201
    other = api.post("/v1/investments", {**body, "amount": 400_000}, who="admin2", idem="order-9")
    assert other.status_code == 201  # its own command, not 409
    assert other.json()["investment_id"] != first.json()["investment_id"]
    head = api.head()
    again = api.post("/v1/investments", body, who="admin", idem="order-9")
    assert (again.status_code, again.json()) == (201, first.json())
    assert_problem(
        api.post("/v1/investments", {**body, "amount": 1}, who="admin", idem="order-9"),
        409,
        "idempotency_key_reused",
    )
    assert api.head() == head
