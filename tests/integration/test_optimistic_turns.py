"""A process that has seen no other writer lately takes its writer turn optimistically
(real PostgreSQL): its batch runs first, and its append checks in the same round trip that
nobody appended since its cache was complete. Another process's events still decide every
rule: a command checked on a stale cache is never appended and never rejected on it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from ledger import commit
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import AssetPausedError, InsufficientBalanceError, InvestorNotEligibleError
from ledger.store import UNNEST_FROM, ClaimRefusedError, LedgerPostgresRecorder
from tests.integration.test_append_exactly_once import fail_first_call, transfers_in_store
from tests.integration.test_writers_take_turns import (
    revoke_kyc_holding_the_writer_lock,
    wait_for_a_writer_waiting_for_the_lock,
)
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(pg_schema_url: str) -> Iterator[LedgerApplication]:
    application = LedgerApplication(store_env(pg_schema_url))
    yield application
    application.close()


@pytest.fixture
def other(pg_schema_url: str) -> Iterator[LedgerApplication]:
    """A second writing process on the same store."""
    application = LedgerApplication(store_env(pg_schema_url))
    yield application
    application.close()


def record_turns(app: LedgerApplication) -> list[bool]:
    """Whether each writer turn `app` takes from now on is optimistic."""
    turns: list[bool] = []
    original = app.admin.writer_turn

    def recording(after: int | None, *, optimistic: bool = False) -> Any:
        turns.append(optimistic)
        return original(after, optimistic=optimistic)

    app.admin.writer_turn = recording  # type: ignore[method-assign]
    return turns


def quiet(app: LedgerApplication, asset_id: str) -> None:
    """Enough of `app`'s own turns in a row that its next one is optimistic."""
    for _ in range(commit.QUIET_TURNS + 1):
        app.transfer(asset_id, "alice", "bob", 1)
        app.transfer(asset_id, "bob", "alice", 1)


def positions(app: LedgerApplication) -> int:
    return app.admin.head_position()


@pytest.fixture
def asset(pg_app: LedgerApplication) -> str:
    asset_id = open_asset(pg_app)
    for investor_id in ("alice", "bob", "carol"):
        onboard(pg_app, investor_id)
    holding(pg_app, asset_id, "alice", 100)
    holding(pg_app, asset_id, "bob", 10)
    return asset_id


def test_a_quiet_process_appends_in_optimistic_turns(pg_app: LedgerApplication, asset: str) -> None:
    quiet(pg_app, asset)
    turns = record_turns(pg_app)
    pg_app.transfer(asset, "alice", "carol", 5)
    assert turns == [True]  # one round trip: claim, check, append, commit
    assert pg_app.get_asset(asset).balances == {"alice": 95, "bob": 10, "carol": 5}
    assert pg_app.admin.verify().ok


def test_an_optimistic_turn_never_appends_on_a_rule_another_process_changed(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str
) -> None:
    quiet(pg_app, asset)
    other.pause_asset(asset)  # pg_app's cached asset is not paused
    head = positions(pg_app)
    turns = record_turns(pg_app)

    with pytest.raises(AssetPausedError) as raised:
        pg_app.transfer(asset, "alice", "carol", 5)

    assert raised.value.code == "asset_paused"
    assert turns == [True, False]  # refused (the head check, or the asset's version), run again
    assert positions(pg_app) == head  # nothing appended
    other.unpause_asset(asset)
    pg_app.transfer(asset, "alice", "carol", 5)
    assert pg_app.get_asset(asset).balances == {"alice": 95, "bob": 10, "carol": 5}
    assert pg_app.admin.verify().ok


def test_an_optimistic_turn_sees_a_rule_changed_on_another_aggregate(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str
) -> None:
    """The KYC is the investor's: the transfer's events (the asset's) meet no other writer's
    event at their versions, so only the head check keeps the stale cache from deciding."""
    quiet(pg_app, asset)
    other.update_kyc("carol", "rejected")
    head = positions(pg_app)
    turns = record_turns(pg_app)

    with pytest.raises(InvestorNotEligibleError) as raised:
        pg_app.transfer(asset, "alice", "carol", 5)

    assert raised.value.code == "investor_not_eligible"
    assert turns == [True, False]
    assert positions(pg_app) == head
    assert pg_app.admin.verify().ok


def test_a_rejection_on_a_stale_cache_is_not_answered(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str
) -> None:
    """On pg_app's cache carol holds nothing; another process gave her 20 meanwhile."""
    quiet(pg_app, asset)
    other.transfer(asset, "alice", "carol", 20)
    turns = record_turns(pg_app)

    pg_app.transfer(asset, "carol", "bob", 15)

    assert turns == [True, False]
    assert pg_app.get_asset(asset).balances == {"alice": 80, "bob": 25, "carol": 5}
    with pytest.raises(InsufficientBalanceError):  # a rejection on the current state stands
        pg_app.transfer(asset, "carol", "bob", 6)
    assert pg_app.admin.verify().ok


def test_a_rejection_in_a_quiet_store_is_answered_after_the_head_is_checked(
    pg_app: LedgerApplication, asset: str
) -> None:
    quiet(pg_app, asset)
    head = positions(pg_app)
    turns = record_turns(pg_app)
    with pytest.raises(InsufficientBalanceError) as raised:
        pg_app.transfer(asset, "carol", "bob", 1)
    assert raised.value.code == "insufficient_balance"
    assert turns == [True]
    assert positions(pg_app) == head


def raw_events(count: int) -> list[StoredEvent]:
    return [StoredEvent(uuid4(), 1, "tests:Raw", json.dumps({"i": i}).encode()) for i in range(count)]


@pytest.mark.parametrize("size", [1, UNNEST_FROM])
def test_the_claim_refuses_a_moved_head_and_appends_nothing(pg_app: LedgerApplication, size: int) -> None:
    """Both append paths: one call of `ledger_append`, and the library's pipeline for a large
    batch. Refused and claimed in runs past the sixth use of each statement (when psycopg
    prepares it by itself): every claim after a refusal works."""
    recorder = pg_app.recorder
    assert isinstance(recorder, LedgerPostgresRecorder)

    def optimistic_append(after: int) -> list[int]:
        with recorder.writer_turn(after, optimistic=True):
            stored = recorder.insert_events(raw_events(size))
        assert stored is not None and len(stored) == size
        return list(stored)

    def refused() -> None:
        head = positions(pg_app)
        recorder.insert_events(raw_events(1))  # another writer's event after `head`
        moved = positions(pg_app)
        assert moved > head
        with pytest.raises(ClaimRefusedError):
            optimistic_append(head)
        assert positions(pg_app) == moved  # nothing of the refused batch

    for rounds in (1, 5, 1, 5, 8):  # refusals and claims around the sixth use of each statement
        for _ in range(rounds):
            refused()
        for _ in range(rounds):
            assert optimistic_append(positions(pg_app))[-1] == positions(pg_app)
    recorder.insert_events(raw_events(1))  # the set-aside connection is still in a usable state
    assert pg_app.admin.verify().ok


def lose_first_append(
    recorder: LedgerPostgresRecorder, *, after_commit: bool, before: Any = lambda: None
) -> list[int]:
    """The next round trip that appends (claim, `ledger_append`, COMMIT) loses its connection:
    after it committed, or before it was sent."""
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    return fail_first_call(recorder, "_send_append", lost, after_commit=after_commit, before=before)


def test_an_optimistic_append_committed_without_acknowledgement_is_made_once(
    pg_app: LedgerApplication, asset: str
) -> None:
    quiet(pg_app, asset)
    before = transfers_in_store(pg_app)
    assert isinstance(pg_app.recorder, LedgerPostgresRecorder)
    calls = lose_first_append(pg_app.recorder, after_commit=True)
    turns = record_turns(pg_app)

    outcome = pg_app.transfer(asset, "alice", "carol", 5)  # no idempotency key

    assert (calls[0], turns) == (1, [True])  # found in the store: not sent again
    assert transfers_in_store(pg_app) == before + 1
    assert outcome.position == pg_app.admin.head_position()
    assert pg_app.get_asset(asset).balances == {"alice": 95, "bob": 10, "carol": 5}
    assert pg_app.admin.verify().ok


def test_an_optimistic_append_sent_again_still_checks_the_head(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str
) -> None:
    """Lost before it was sent, while another process revoked the receiver's KYC: the batch
    is sent again with a claim of its own, refused, and run again on the current state."""
    quiet(pg_app, asset)
    head = positions(pg_app)
    assert isinstance(pg_app.recorder, LedgerPostgresRecorder)
    calls = lose_first_append(
        pg_app.recorder, after_commit=False, before=lambda: other.update_kyc("carol", "rejected")
    )
    turns = record_turns(pg_app)

    with pytest.raises(InvestorNotEligibleError):
        pg_app.transfer(asset, "alice", "carol", 5)

    assert calls[0] == 2  # the lost one, and the copy whose claim was refused
    assert turns == [True, False]
    assert positions(pg_app) == head + 1  # the other process's KYC decision only
    assert pg_app.admin.verify().ok


def test_an_optimistic_batch_on_versions_another_process_took_is_refused_and_run_again_once(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str
) -> None:
    """Another process appended to the asset: the optimistic batch's events collide with its
    on the unique key inside `ledger_append`, before the head check. That too refuses the
    claim (the statement undid everything): the batch runs again in one real turn, not each
    command alone in a turn of its own."""
    quiet(pg_app, asset)
    other.transfer(asset, "alice", "bob", 1)  # the asset's next version, in the store
    committer = pg_app.committer
    batch: list[Any] = []
    execute = committer.execute
    committer.execute = lambda command: batch.append(commit._Pending(command))  # type: ignore[method-assign,func-returns-value]
    for _ in range(6):
        pg_app.transfer(asset, "alice", "carol", 1)
    committer.execute = execute  # type: ignore[method-assign]
    turns = record_turns(pg_app)

    with committer._lock:
        committer._run_batch(batch)

    assert turns == [True, False]  # refused, then one real turn for the six
    assert all(pending.done and pending.error is None for pending in batch)
    assert pg_app.get_asset(asset).balances == {"alice": 93, "bob": 11, "carol": 6}
    assert pg_app.admin.verify().ok


def test_an_optimistic_claim_reads_the_head_only_once_it_holds_the_writer_lock(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str
) -> None:
    """The claim and the append are one statement: lock timeout, writer lock, `ledger_append`
    (which reads the chain's last position once the lock is held), then the head check that
    undoes it all if that position is past the expected head. Another process holds the lock
    while it revokes the receiver's KYC; the optimistic transfer waits for the lock, then
    reads the head the revocation moved: refused, it runs again and is rejected. Read before
    the lock was granted, the head would still pass and the transfer would be appended on a
    stale rule."""
    quiet(pg_app, asset)
    head = positions(pg_app)
    revoking, go = revoke_kyc_holding_the_writer_lock(other, "carol")
    turns = record_turns(pg_app)
    outcome: list[BaseException | None] = []

    def transfer() -> None:
        try:
            pg_app.transfer(asset, "alice", "carol", 5)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    transferring = threading.Thread(target=transfer)
    transferring.start()
    wait_for_a_writer_waiting_for_the_lock("the optimistic claim")
    go.set()
    revoking.join(30)
    transferring.join(30)

    assert isinstance(outcome[0], InvestorNotEligibleError)
    assert turns == [True, False]  # refused once the lock was granted, run again on the revocation
    assert positions(pg_app) == head + 1  # the revocation only
    assert pg_app.admin.verify().ok


def test_the_head_check_reads_the_index_in_a_generic_plan(pg_app: LedgerApplication) -> None:
    """The check runs as a prepared statement (before a large batch), so after five runs
    PostgreSQL may plan it once for any position: that plan must still read one entry of
    the index, not the table (the first form, `NOT EXISTS (... WHERE notification_id > $1)`,
    scanned every event)."""
    recorder = pg_app.recorder
    assert isinstance(recorder, LedgerPostgresRecorder)
    recorder.insert_events(raw_events(UNNEST_FROM))
    statement = recorder._expect_head.replace(b"%s", b"$1::bigint").decode()
    with recorder.datastore.get_connection() as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE expect_head AS {statement}")
        try:
            plan = conn.execute("EXPLAIN EXECUTE expect_head(1)").fetchall()
        finally:
            conn.execute("DEALLOCATE expect_head")
            conn.execute("RESET plan_cache_mode")
    text = "\n".join(str(next(iter(row.values()))) for row in plan)
    assert "Seq Scan" not in text and "Index Only Scan Backward" in text, text


def test_a_real_turns_batch_sent_again_after_losing_the_lock_still_checks_the_head(
    pg_app: LedgerApplication, other: LedgerApplication, asset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real turn's append loses its connection before it was sent, and with it the writer
    lock; meanwhile another process revokes the receiver's KYC. The batch sent again claims
    the lock again and checks the head its turn confirmed: refused, it runs again on the
    current state instead of being appended on the stale one."""
    monkeypatch.setattr(commit, "QUIET_TURNS", 10**9)  # real turns only
    head = positions(pg_app)
    assert isinstance(pg_app.recorder, LedgerPostgresRecorder)
    recorder = pg_app.recorder

    def connection_lost_then_kyc_revoked() -> None:
        assert recorder._turn is not None
        recorder._turn.conn.close()  # the server ends the turn's transaction: the lock is free
        other.update_kyc("carol", "rejected")

    calls = lose_first_append(recorder, after_commit=False, before=connection_lost_then_kyc_revoked)
    turns = record_turns(pg_app)

    with pytest.raises(InvestorNotEligibleError):
        pg_app.transfer(asset, "alice", "carol", 5)

    assert calls[0] == 2  # the lost one, and the copy whose claim was refused
    assert True not in turns and len(turns) == 2  # the batch's turn, then the command's alone
    assert positions(pg_app) == head + 1  # the other process's KYC decision only
    assert pg_app.admin.verify().ok
