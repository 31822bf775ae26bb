"""The outbox worker against a fake chain: once each, in order, surviving a death after sending."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from adapters.chain.outbound import MAX_ATTEMPTS, OutboxWorker, TransientChainError
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.chain import ChainOperation
from ledger.outbox import DONE, FAILED, PENDING, SIGNED
from tests.conftest import PG_URL
from tests.fake_chain import FakeChain, WorkerDiedError
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.integration

TOKEN = "0x" + "7" * 40
REGISTRY = "0x" + "8" * 40
SUITE = {
    "identity_registry_storage": "0x" + "1" * 40,
    "compliance": "0x" + "2" * 40,
    "claim_topics_registry": "0x" + "3" * 40,
    "trusted_issuers_registry": "0x" + "4" * 40,
    "id_factory": "0x" + "5" * 40,
    "claim_issuer": "0x" + "6" * 40,
    "deployed_at_block": 1,
}


def bind(app: LedgerApplication, asset_id: str, token: str = TOKEN) -> None:
    app.bind_token(asset_id, 31337, token, REGISTRY)
    app.start_mirror(asset_id, 1, False, SUITE)


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain()


def worker_for(
    app: LedgerApplication, chain: FakeChain, assets: tuple[str, ...] = ("TOLL-JKT-01",)
) -> OutboxWorker:
    return OutboxWorker(app, chain, lambda: list(assets), receipt_timeout=1)


def outcomes(app: LedgerApplication, seq: int, asset_id: str = "TOLL-JKT-01") -> ChainOperation:
    recorded = app.repository.get(ChainOperation.create_id(seq, asset_id))
    assert isinstance(recorded, ChainOperation)
    return recorded


def scenario(app: LedgerApplication) -> str:
    asset_id = open_asset(app)
    bind(app, asset_id)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 10)
    app.transfer(asset_id, "alice", "bob", 4)
    app.freeze_tokens(asset_id, "bob", 1)
    return asset_id


def test_operations_are_carried_out_once_in_order_and_recorded(
    app: LedgerApplication, chain: FakeChain
) -> None:
    asset_id = scenario(app)
    assert worker_for(app, chain).run_once() == 3
    assert [c[1] for c in chain.calls] == ["mint", "forced_transfer", "freeze_partial"]
    assert chain.balances[TOKEN, app.get_investor("alice").wallets[0]] == 6
    assert chain.balances[TOKEN, app.get_investor("bob").wallets[0]] == 4
    assert chain.frozen[TOKEN, app.get_investor("bob").wallets[0]] == 1
    rows = app.outbox.all_rows()
    assert [r.state for r in rows] == [DONE, DONE, DONE]
    first = outcomes(app, rows[0].seq, asset_id)
    assert first.succeeded and first.tx_hash == rows[0].tx_hash and first.block_number == 100
    # a second run has nothing left to do
    assert worker_for(app, chain).run_once() == 0
    assert set(chain.executed.values()) == {1}


def test_a_worker_dying_after_sending_does_not_send_again(app: LedgerApplication, chain: FakeChain) -> None:
    scenario(app)
    chain.die_after_broadcast = True
    with pytest.raises(WorkerDiedError):
        worker_for(app, chain).run_once()
    row = app.outbox.all_rows()[0]
    assert row.state == SIGNED and row.tx_hash is not None
    assert worker_for(app, chain).run_once() == 3
    assert chain.executed == {0: 1, 1: 1, 2: 1}
    assert outcomes(app, row.seq).tx_hash == row.tx_hash


def test_a_worker_dying_before_its_transaction_left_resends_the_same_one(
    app: LedgerApplication, chain: FakeChain
) -> None:
    scenario(app)
    chain.lose_next_broadcast = True
    with pytest.raises(WorkerDiedError):
        worker_for(app, chain).run_once()
    signed = app.outbox.all_rows()[0]
    assert signed.state == SIGNED and chain.executed == {}
    assert worker_for(app, chain).run_once() == 3
    assert chain.executed == {0: 1, 1: 1, 2: 1}
    assert outcomes(app, signed.seq).tx_hash == signed.tx_hash  # the very transaction signed before


def test_a_call_the_chain_refuses_is_recorded_as_failed_and_the_rest_goes_on(
    app: LedgerApplication, chain: FakeChain
) -> None:
    scenario(app)
    chain.refused.add(app.get_investor("bob").wallets[0])
    assert worker_for(app, chain).run_once() == 3
    rows = app.outbox.all_rows()
    assert [r.state for r in rows] == [DONE, FAILED, FAILED]
    failed = outcomes(app, rows[1].seq)
    assert not failed.succeeded and "Identity is not verified" in (failed.reason or "")
    assert [c[1] for c in chain.calls] == ["mint"]


def test_an_unreachable_node_stops_the_run_and_keeps_the_order(
    app: LedgerApplication, chain: FakeChain
) -> None:
    scenario(app)
    chain.unreachable = 1
    with pytest.raises(TransientChainError):
        worker_for(app, chain).run_once()
    first = app.outbox.all_rows()[0]
    assert first.state == SIGNED and first.attempts == 1
    assert worker_for(app, chain).run_once() == 3
    assert [c[1] for c in chain.calls] == ["mint", "forced_transfer", "freeze_partial"]


def test_an_operation_never_sent_is_given_up_after_bounded_attempts(
    app: LedgerApplication, chain: FakeChain
) -> None:
    asset_id = open_asset(app)
    bind(app, asset_id)
    app.pause_asset(asset_id)
    app.get_asset(asset_id)

    class Down(FakeChain):
        def next_nonce(self) -> int:
            raise ConnectionError("node unreachable")

    down = Down()
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(TransientChainError):
            worker_for(app, down).run_once()
    assert app.outbox.all_rows()[0].state == PENDING
    assert worker_for(app, down).run_once() == 1
    row = app.outbox.all_rows()[0]
    assert row.state == FAILED and "gave up after" in (row.error or "")
    assert not outcomes(app, row.seq).succeeded


def test_a_recovery_is_carried_out_on_every_bound_token_holding_the_wallet(
    app: LedgerApplication, chain: FakeChain
) -> None:
    first = open_asset(app)
    second = open_asset(app, asset_id="WATER-SBY-02", symbol="WSB")
    bind(app, first)
    bind(app, second, token="0x" + "9" * 40)
    onboard(app, "alice")
    holding(app, first, "alice", 10)
    lost = app.get_investor("alice").wallets[0]
    new = "0x" + "c0" * 20
    app.recover_wallet("alice", lost, new)
    new = app.get_investor("alice").wallets[0]  # as stored: checksummed
    assert worker_for(app, chain, (first, second)).run_once() == 2
    recovery = app.outbox.all_rows()[-1]
    assert recovery.state == DONE and recovery.done_targets == [first, second]
    assert [c[1] for c in chain.calls] == ["mint", "recover"]
    assert chain.balances[TOKEN, new] == 10
    skipped = outcomes(app, recovery.seq, second)
    assert skipped.succeeded and skipped.tx_hash is None and "holds nothing" in (skipped.reason or "")


def test_recovering_a_wallet_emptied_on_chain_is_not_sent_to_the_token(
    app: LedgerApplication, chain: FakeChain
) -> None:
    asset_id = open_asset(app)
    bind(app, asset_id)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 1)
    app.transfer(asset_id, "alice", "bob", 1)
    app.recover_wallet("alice", app.get_investor("alice").wallets[0], "0x" + "c0" * 20)
    assert worker_for(app, chain).run_once() == 3
    assert [r.state for r in app.outbox.all_rows()] == [DONE, DONE, DONE]  # T-REX would refuse it


def test_an_address_freeze_follows_a_recovered_wallet_that_holds_nothing(
    app: LedgerApplication, chain: FakeChain
) -> None:
    asset_id = open_asset(app)
    bind(app, asset_id)
    onboard(app, "alice")
    app.freeze_investor(asset_id, "alice")
    app.recover_wallet("alice", app.get_investor("alice").wallets[0], "0x" + "c0" * 20)
    holding(app, asset_id, "alice", 1)
    assert worker_for(app, chain).run_once() == 3
    new = app.get_investor("alice").wallets[0]
    assert chain.balances[TOKEN, new] == 1
    assert (TOKEN, new) in chain.address_frozen


@pytest.mark.postgres
def test_one_worker_at_a_time_sends_for_a_store_and_each_store_has_its_own_turn(
    pg_schema_url: str,
) -> None:
    first, second = (LedgerApplication(store_env(pg_schema_url)) for _ in range(2))
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{other_schema}"')
    other = LedgerApplication(store_env(f"{PG_URL}?schema={other_schema}"))
    try:
        with (
            first.outbox.exclusive() as held,
            second.outbox.exclusive() as also,
            other.outbox.exclusive() as own,
        ):
            assert (held, also, own) == (True, False, True)
        with second.outbox.exclusive() as now:
            assert now
    finally:
        for app in (first, second, other):
            app.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{other_schema}" CASCADE')
