"""Several processes writing to one PostgreSQL store take turns and keep every valid command.

Each process's committer takes the store-wide writer lock for a batch and brings its
cached aggregates forward from what the others appended, so a command is never run on
stale state, never collides, and never replays an aggregate's whole history.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ledger import commit, snapshots
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.asset import Asset
from ledger.errors import ConcurrencyError, InsufficientBalanceError, InvestorNotEligibleError
from tests.conftest import PG_URL
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.postgres

INVESTORS = [f"inv-{n}" for n in range(6)]
START = 50


@pytest.fixture
def pg_app(pg_schema_url: str) -> Iterator[LedgerApplication]:
    application = LedgerApplication(store_env(pg_schema_url))
    yield application
    application.close()


def record_loads(app: LedgerApplication) -> list[Any]:
    """The ids of the aggregates `app` loads from the store (snapshot and events) from now on."""
    loads: list[Any] = []
    original = app.repository.get

    def recording(aggregate_id: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(aggregate_id)
        return original(aggregate_id, *args, **kwargs)

    app.repository.get = recording  # type: ignore[method-assign]
    return loads


def test_a_process_brings_its_cached_asset_forward_from_the_others_events(
    pg_app: LedgerApplication, pg_schema_url: str
) -> None:
    asset_id = open_asset(pg_app)
    for investor_id in ("alice", "bob", "carol"):
        onboard(pg_app, investor_id)
    holding(pg_app, asset_id, "alice", 100)
    other = LedgerApplication(store_env(pg_schema_url))
    try:
        other.transfer(asset_id, "alice", "bob", 10)  # caches the asset in the other process
        pg_app.transfer(asset_id, "alice", "carol", 20)
        pg_app.transfer(asset_id, "bob", "carol", 5)
        loads = record_loads(other)

        other.transfer(asset_id, "carol", "alice", 25)
        with pytest.raises(InsufficientBalanceError):  # bob has 5 left, as the other process knows
            other.transfer(asset_id, "bob", "alice", 6)

        assert Asset.create_id(asset_id) not in loads  # brought forward from the events, not reloaded
        balances = other.get_asset(asset_id).balances
        assert balances == {"alice": 95, "bob": 5}
        assert pg_app.get_asset(asset_id).balances == balances
        assert pg_app.admin.verify().ok
    finally:
        other.close()


def _transfer_at_random(url: str, asset_id: str, seed: int, count: int, out: Any) -> None:
    """One writing process: `count` random transfers; reports what it committed."""
    app = LedgerApplication(store_env(url))
    rng = random.Random(seed)
    made: list[tuple[str, str, int]] = []
    conflicts = 0
    try:
        for _ in range(count):
            sender, receiver = rng.sample(INVESTORS, 2)
            quantity = rng.randint(1, 3)
            try:
                app.transfer(asset_id, sender, receiver, quantity)
            except InsufficientBalanceError:
                continue
            except ConcurrencyError:
                conflicts += 1
                continue
            made.append((sender, receiver, quantity))
    finally:
        app.close()
    out.put((made, conflicts))


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_processes_racing_on_one_asset_keep_every_valid_transfer(
    pg_app: LedgerApplication, pg_schema_url: str, processes: int
) -> None:
    asset_id = open_asset(pg_app)
    for investor_id in INVESTORS:
        onboard(pg_app, investor_id)
        holding(pg_app, asset_id, investor_id, START)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [
        context.Process(target=_transfer_at_random, args=(pg_schema_url, asset_id, seed, 150, out))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [out.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert sum(conflicts for _, conflicts in reports) == 0  # no valid command rejected
    expected = dict.fromkeys(INVESTORS, START)
    for made, _ in reports:
        for sender, receiver, quantity in made:
            expected[sender] -= quantity
            expected[receiver] += quantity
    fresh = LedgerApplication(store_env(pg_schema_url))
    try:
        balances = fresh.get_asset(asset_id).balances
    finally:
        fresh.close()
    assert balances == {k: v for k, v in expected.items() if v}
    assert sum(len(made) for made, _ in reports) > 0
    assert pg_app.admin.verify().ok


def test_a_long_stream_loads_from_its_snapshot(
    pg_app: LedgerApplication, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SNAPSHOT_EVERY", 10)
    asset_id = open_asset(pg_app, lockup_seconds=3600)
    onboard(pg_app, "alice")
    onboard(pg_app, "bob")
    holding(pg_app, asset_id, "alice", 100)  # an issuance lot, kept in the snapshot
    for _ in range(16):
        pg_app.transfer(asset_id, "alice", "bob", 1, forced=True)
    live = pg_app.get_asset(asset_id)
    assert live.version > 20
    stored = list(pg_app.snapshots.get(live.id, desc=True, limit=1)) if pg_app.snapshots else []
    assert stored and stored[0].originator_version >= 20

    fresh = LedgerApplication(store_env(pg_schema_url))
    try:
        read = events_read(fresh)
        loaded = fresh.get_asset(asset_id)
        assert vars(loaded) == vars(live)  # lots as tuples, balances, frozen, version: all equal
        assert read[0] <= 10  # the events after the snapshot only
        fresh.transfer(asset_id, "bob", "alice", 2, forced=True)
    finally:
        fresh.close()
    assert pg_app.admin.verify().ok  # snapshots are not history


def test_an_emptied_snapshot_table_costs_one_replay_then_snapshots_again(
    pg_app: LedgerApplication, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "SNAPSHOT_EVERY", 10)
    asset_id = open_asset(pg_app)
    onboard(pg_app, "alice")
    onboard(pg_app, "bob")
    holding(pg_app, asset_id, "alice", 100)
    for _ in range(25):
        pg_app.transfer(asset_id, "alice", "bob", 1, forced=True)
    schema = pg_schema_url.rsplit("schema=", 1)[1]
    with pg_app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
        conn.execute(f'DELETE FROM "{schema}".ledger_snapshots')

    fresh = LedgerApplication(store_env(pg_schema_url))
    try:
        assert fresh.get_asset(asset_id).balances == {"alice": 75, "bob": 25}
        version = fresh.get_asset(asset_id).version
        stored = list(fresh.snapshots.get(fresh.get_asset(asset_id).id, desc=True, limit=1))  # type: ignore[union-attr]
        assert stored and stored[0].originator_version == version
    finally:
        fresh.close()


def events_read(app: LedgerApplication) -> list[int]:
    """Counts the events `app` reads from its event store."""
    read = [0]
    original = app.events.get

    def counting(*args: Any, **kwargs: Any) -> Any:
        for event in original(*args, **kwargs):
            read[0] += 1
            yield event

    app.events.get = counting  # type: ignore[method-assign]
    return read


def revoke_kyc_holding_the_writer_lock(
    other: LedgerApplication, investor_id: str
) -> tuple[threading.Thread, threading.Event]:
    """Starts `other` revoking `investor_id`'s KYC, and returns once its turn holds the writer
    lock: the thread, and the event that lets it append and commit (ending its turn)."""
    holding_lock, go = threading.Event(), threading.Event()
    append = other.committer._append

    def append_when_told(ran: Any) -> None:
        holding_lock.set()  # `other` is in its turn: it holds the writer lock
        assert go.wait(30)
        append(ran)

    other.committer._append = append_when_told  # type: ignore[method-assign]
    revoking = threading.Thread(target=other.update_kyc, args=(investor_id, "rejected"))
    revoking.start()
    assert holding_lock.wait(30)
    return revoking, go


def wait_for_a_writer_waiting_for_the_lock(who: str) -> None:
    """Returns once some session waits for an advisory lock (the writer lock held above)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(PG_URL, autocommit=True) as watcher:
        while not watcher.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, f"{who} never waited for the writer lock"
            time.sleep(0.005)


def test_commands_queued_while_a_turn_waits_for_the_lock_join_its_batch(
    pg_app: LedgerApplication, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the writer lock, this process's leader waits for it with
    the one command it took; the commands queued meanwhile join that batch once the lock is
    granted, instead of waiting for a turn each (with several processes, the lock is waited
    for most of the time). Each is answered as if alone."""
    monkeypatch.setattr(commit, "QUIET_TURNS", 10**9)  # real turns: the lock is waited for
    asset_id = open_asset(pg_app)
    for investor_id in ("alice", "bob", "carol"):
        onboard(pg_app, investor_id)
    holding(pg_app, asset_id, "alice", 100)
    other = LedgerApplication(store_env(pg_schema_url))
    turns: list[int] = []
    take = pg_app.committer._attempt_in_turn

    def counting(batch: list[Any], **kwargs: Any) -> None:
        take(batch, **kwargs)
        turns.append(len(batch))

    pg_app.committer._attempt_in_turn = counting  # type: ignore[method-assign]
    outcomes: list[Any] = []

    def transfer(receiver: str, quantity: int) -> None:
        try:
            outcomes.append(pg_app.transfer(asset_id, "alice", receiver, quantity))
        except Exception as error:
            outcomes.append(error)

    try:
        revoking, go = revoke_kyc_holding_the_writer_lock(other, "carol")
        first = threading.Thread(target=transfer, args=("bob", 10))
        first.start()
        wait_for_a_writer_waiting_for_the_lock("the leader")
        deadline = time.monotonic() + 30
        orders = (("bob", 20), ("carol", 5), ("bob", 30))
        queued = [threading.Thread(target=transfer, args=order) for order in orders]
        for thread in queued:
            thread.start()
        while len(pg_app.committer._queue) < len(queued):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        go.set()
        for thread in (revoking, first, *queued):
            thread.join(30)
    finally:
        other.close()

    assert turns == [4]  # one turn, the three queued commands in it
    assert sum(isinstance(o, InvestorNotEligibleError) for o in outcomes) == 1  # carol, revoked meanwhile
    assert sum(not isinstance(o, Exception) for o in outcomes) == 3
    assert pg_app.get_asset(asset_id).balances == {"alice": 40, "bob": 60}
    assert pg_app.admin.verify().ok
