"""The chain outbox: written with the events, in the same transaction, only for bound assets."""

from __future__ import annotations

import pytest

from ledger.application import LedgerApplication
from ledger.errors import InsufficientBalanceError
from ledger.outbox import PENDING
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.integration

TOKEN = "0x" + "7" * 40
REGISTRY = "0x" + "8" * 40


def bound_asset(app: LedgerApplication) -> str:
    asset_id = open_asset(app)
    app.bind_token(asset_id, 31337, TOKEN, REGISTRY)
    return asset_id


def kinds(app: LedgerApplication) -> list[str]:
    return [row.kind for row in app.outbox.all_rows()]


def test_operations_on_an_unbound_asset_owe_the_chain_nothing(app: LedgerApplication) -> None:
    asset_id = open_asset(app)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 10)
    app.transfer(asset_id, "alice", "bob", 3)
    assert app.outbox.all_rows() == []


def test_each_ledger_operation_on_a_bound_asset_queues_its_chain_operation(app: LedgerApplication) -> None:
    asset_id = bound_asset(app)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 10)
    app.transfer(asset_id, "alice", "bob", 3)
    app.transfer(asset_id, "bob", "alice", 1, forced=True)
    app.freeze_tokens(asset_id, "alice", 2)
    app.unfreeze_tokens(asset_id, "alice", 1)
    app.freeze_investor(asset_id, "bob")
    app.unfreeze_investor(asset_id, "bob")
    app.pause_asset(asset_id)
    app.unpause_asset(asset_id)
    app.redeem(asset_id, "alice", 1)
    app.recover_wallet("bob", app.get_investor("bob").wallets[0], "0x" + "b0" * 20)
    rows = app.outbox.all_rows()
    assert [r.kind for r in rows] == [
        "mint",
        "forced_transfer",
        "forced_transfer",
        "freeze_partial",
        "unfreeze_partial",
        "set_address_frozen",
        "set_address_frozen",
        "pause",
        "unpause",
        "burn",
        "recover",
    ]
    assert all(r.state == PENDING for r in rows)
    assert rows[0].payload == {"investor_id": "alice", "quantity": 10}
    assert rows[1].payload == {"from_investor_id": "alice", "to_investor_id": "bob", "quantity": 3}
    assert rows[5].payload == {"investor_id": "bob", "frozen": True}
    assert rows[-1].asset_id is None  # a recovery concerns every bound token
    # each row points at the event that owes it
    assert [r.position for r in rows] == sorted(r.position for r in rows)
    owed_by = app.recorder.select_notifications(start=rows[-1].position, limit=1)[0]
    assert owed_by.topic.endswith("Investor.WalletRecovered")


def test_a_rejected_command_queues_nothing(app: LedgerApplication) -> None:
    asset_id = bound_asset(app)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 10)
    before = app.admin.head_position()
    with pytest.raises(InsufficientBalanceError):
        app.transfer(asset_id, "alice", "bob", 11)
    assert kinds(app) == ["mint"]
    assert app.admin.head_position() == before


def test_an_idempotent_replay_queues_nothing_more(app: LedgerApplication) -> None:
    asset_id = bound_asset(app)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 10)
    first = app.transfer(asset_id, "alice", "bob", 3, idempotency_key="t-1")
    again = app.transfer(asset_id, "alice", "bob", 3, idempotency_key="t-1")
    assert again == first
    assert kinds(app) == ["mint", "forced_transfer"]


def test_issuance_before_binding_is_not_queued(app: LedgerApplication) -> None:
    asset_id = open_asset(app)
    onboard(app, "alice")
    holding(app, asset_id, "alice", 10)
    app.bind_token(asset_id, 31337, TOKEN, REGISTRY)
    holding(app, asset_id, "alice", 5)
    rows = app.outbox.all_rows()
    assert [(r.kind, r.payload["quantity"]) for r in rows] == [("mint", 5)]
