"""The chain adapter end to end on a real anvil: ledger -> outbox -> chain -> mirror -> reconciliation."""

from __future__ import annotations

from collections import Counter

import pytest

from adapters.chain.trex import TokenCall
from projections.chain import WalletPosition, chain_state, mirror_of, positions_by_investor
from projections.schema import snapshot
from tests.chain.world import CONFIRMATIONS, WALLETS, World, address, onboard, tokenized
from tests.support import holding, open_asset

pytestmark = [pytest.mark.anvil, pytest.mark.e2e, pytest.mark.slow]


def kinds(report: dict[str, object]) -> Counter[tuple[str, str | None]]:
    differences = report["differences"]
    assert isinstance(differences, list)
    return Counter((d["kind"], d["investor_id"]) for d in differences)


def test_ledger_operations_reach_the_chain_and_reconcile_cleanly(world: World) -> None:
    asset_id = tokenized(world)
    app = world.app
    holding(app, asset_id, "alice", 100)
    holding(app, asset_id, "bob", 50)
    holding(app, asset_id, "carol", 5)
    app.transfer(asset_id, "alice", "bob", 30)
    app.freeze_tokens(asset_id, "bob", 10)
    app.freeze_investor(asset_id, "carol")
    app.pause_asset(asset_id)
    app.transfer(asset_id, "bob", "alice", 15, forced=True)  # consumes 5 frozen tokens, as T-REX does
    app.unpause_asset(asset_id)
    app.redeem(asset_id, "alice", 5)
    world.settle()

    suite = world.suite(asset_id)
    assert world.client.balance_of(suite, address("alice")) == 80
    assert world.client.balance_of(suite, address("bob")) == 65
    assert world.client.frozen_of(suite, address("bob")) == app.get_asset(asset_id).frozen_of("bob")
    assert world.client.is_frozen(suite, address("carol"))
    assert not world.client.paused(suite)
    report = world.reconcile(asset_id)
    assert report["differences"] == [] and report["in_flight"] == []
    assert report["holders_checked"] == 3
    with snapshot(world.engine) as conn:
        investors, unknown = positions_by_investor(conn, asset_id, report["final_block"])
    assert unknown == {}
    assert {i: (p.balance, p.frozen, p.address_frozen) for i, p in investors.items()} == {
        "alice": (80, 0, False),
        "bob": (65, app.get_asset(asset_id).frozen_of("bob"), False),
        "carol": (5, 0, True),
    }
    assert all(row.state == "done" for row in app.outbox.all_rows())


def test_operations_waiting_in_the_outbox_are_in_flight_not_differences(world: World) -> None:
    asset_id = tokenized(world)
    holding(world.app, asset_id, "alice", 100)
    world.settle()
    world.app.transfer(asset_id, "alice", "bob", 30)
    report = world.reconcile(asset_id)
    assert report["differences"] == []
    assert [f["kind"] for f in report["in_flight"]] == ["forced_transfer"]  # type: ignore[index]
    world.settle()
    report = world.reconcile(asset_id)
    assert report["differences"] == [] and report["in_flight"] == []


def test_every_kind_of_difference_is_reported_once(world: World) -> None:
    app, client = world.app, world.client
    asset_id = open_asset(app)
    onboard(app, "gina")
    holding(app, asset_id, "gina", 7)  # issued in the ledger before the token exists: never minted
    world.service.deploy(asset_id)
    for name in ("alice", "bob", "carol", "dave"):
        onboard(app, name)
    holding(app, asset_id, "alice", 100)
    holding(app, asset_id, "bob", 50)
    holding(app, asset_id, "carol", 20)
    world.settle()
    suite = world.suite(asset_id)
    erin = address("erin")  # a wallet no investor holds
    client.ensure_identity(suite, erin, 360)
    client.ensure_identity(suite, address("dave"), 702)
    world.anvil.set_balance(address("alice"), 10**20)
    world.anvil.set_balance(address("bob"), 10**20)
    # done directly on chain, outside the ledger
    client.transfer_from_wallet(suite, WALLETS["alice"], erin, 5)
    client.transfer_from_wallet(suite, WALLETS["bob"], address("dave"), 2)
    client.agent_call(suite, TokenCall("freeze_partial", {"user": address("carol"), "amount": 1}))
    client.agent_call(suite, TokenCall("set_address_frozen", {"user": address("bob"), "frozen": True}))
    client.agent_call(suite, TokenCall("mint", {"to": address("carol"), "amount": 3}))
    client.agent_call(suite, TokenCall("pause", {}))
    world.anvil.mine(CONFIRMATIONS + 1)

    report = world.reconcile(asset_id)
    assert kinds(report) == Counter(
        {
            ("missing_on_chain", "gina"): 1,
            ("quantity_mismatch", "alice"): 1,
            ("unknown_wallet", None): 1,
            ("quantity_mismatch", "bob"): 1,
            ("address_freeze_mismatch", "bob"): 1,
            ("missing_in_ledger", "dave"): 1,
            ("frozen_mismatch", "carol"): 1,
            ("quantity_mismatch", "carol"): 1,
            ("pause_mismatch", None): 1,
            ("supply_mismatch", None): 1,
        }
    )
    by_kind = {(d["kind"], d["investor_id"]): d for d in report["differences"]}  # type: ignore[attr-defined]
    assert by_kind["quantity_mismatch", "alice"]["ledger"] == "100"
    assert by_kind["quantity_mismatch", "alice"]["chain"] == "95"
    assert by_kind["unknown_wallet", None]["wallets"] == [erin]
    assert by_kind["supply_mismatch", None]["ledger"] == "177"
    assert by_kind["supply_mismatch", None]["chain"] == "173"


def test_a_reorganisation_retracts_orphaned_logs_and_the_mirror_follows_the_canonical_chain(
    world: World,
) -> None:
    asset_id = tokenized(world)
    app, client = world.app, world.client
    holding(app, asset_id, "alice", 100)
    world.settle()
    suite = world.suite(asset_id)
    world.mirror()
    client.ensure_identity(suite, address("bob"), 702)
    world.anvil.set_automine(False)
    # two blocks of out-of-band transfers, mirrored while not yet final
    for amount in (7, 11):
        signed = client.sign(
            suite,
            TokenCall("forced_transfer", {"from_": address("alice"), "to": address("bob"), "amount": amount}),
            client.next_nonce(),
        )
        client.broadcast(signed)
        world.anvil.mine(1)
    world.mirror()
    with snapshot(world.engine) as conn:
        head = world.anvil.block_number()
        unconfirmed = chain_state(conn, asset_id, head, False)
    assert unconfirmed.wallets[address("bob")].balance == 18
    # the last block is replaced by an empty one, then the chain loses one more block
    world.anvil.reorg(1)
    report = world.mirror()[0]
    assert report.reorganisations == 1 and report.retracted == 1
    world.anvil.rollback(2)  # the replacement block and the one before it
    report = world.mirror()[0]
    assert report.reorganisations == 1 and report.retracted == 1
    world.anvil.mine(CONFIRMATIONS + 1)
    world.mirror()
    head = world.anvil.block_number()
    with snapshot(world.engine) as conn:
        mirrored = chain_state(conn, asset_id, head, bool(mirror_of(conn, asset_id).paused_at_start))
    for name in ("alice", "bob"):
        position = mirrored.wallets.get(address(name), WalletPosition())
        assert position.balance == client.balance_of(suite, address(name))
    assert mirrored.supply == client.total_supply(suite)


def test_a_wallet_recovery_moves_the_tokens_on_chain_and_reconciles(world: World) -> None:
    asset_id = tokenized(world)
    app, client = world.app, world.client
    holding(app, asset_id, "alice", 10)
    app.freeze_tokens(asset_id, "alice", 3)
    app.freeze_investor(asset_id, "alice")
    holding(app, asset_id, "bob", 4)
    app.transfer(asset_id, "bob", "carol", 4)  # bob's wallet ends empty on chain
    app.recover_wallet("alice", address("alice"), address("erin"))
    app.recover_wallet("bob", address("bob"), address("gina"))
    world.settle()
    suite = world.suite(asset_id)
    rows = app.outbox.all_rows()
    assert all(row.state == "done" for row in rows), [(r.kind, r.state, r.error) for r in rows]
    assert client.balance_of(suite, address("erin")) == 10
    assert client.frozen_of(suite, address("erin")) == 3
    assert client.is_frozen(suite, address("erin"))
    assert client.balance_of(suite, address("alice")) == 0
    assert all(row.state == "done" for row in app.outbox.all_rows())
    report = world.reconcile(asset_id)
    assert report["differences"] == []
    app.unfreeze_investor(asset_id, "alice")
    world.settle()
    assert world.reconcile(asset_id)["differences"] == []
