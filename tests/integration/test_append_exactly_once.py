"""A batch whose commit is not acknowledged is appended exactly once (real PostgreSQL).

The connection loss is injected into the recorder's own append step (a port of ours):
the first attempt really commits, or really does nothing, and then the caller sees the
error a dropped connection gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent

from ledger import commit
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import OutcomeUnknownError
from ledger.store import UNNEST_FROM, LedgerPostgresRecorder
from ledger.store import postgres as store
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(pg_schema_url: str) -> Iterator[LedgerApplication]:
    application = LedgerApplication(store_env(pg_schema_url))
    yield application
    application.close()


def fail_first_call(
    owner: Any,
    name: str,
    error: Exception,
    *,
    after_commit: bool,
    before: Callable[[], None] = lambda: None,
    when: Callable[..., bool] = lambda *_: True,
) -> list[int]:
    """Makes the next call of `owner.name` (for which `when` holds) raise `error` as a dropped
    connection does: after the call ran (`after_commit`: it committed) or before it reached
    the server. Returns the counter of those calls."""
    original = getattr(owner, name)
    calls = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not when(*args):
            return original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == 1:
            if after_commit:
                original(*args, **kwargs)
            before()
            raise error
        return original(*args, **kwargs)

    setattr(owner, name, flaky)
    return calls


def lose_connection_once(
    recorder: LedgerPostgresRecorder,
    step: str,
    *,
    after_commit: bool,
    before: Callable[[], None] = lambda: None,
) -> list[int]:
    """The recorder's `step` (an append) loses its connection once, as the library reports it."""
    lost = OperationalError("server closed the connection unexpectedly")
    return fail_first_call(recorder, step, lost, after_commit=after_commit, before=before)


def lose_connection_once_on(
    conn: psycopg.Connection[Any], *, after_commit: bool, statement: bytes = b"ledger_append"
) -> list[int]:
    """The same one level down: the connection's next statement containing `statement` (by
    default the append, in the writer turn) fails with psycopg's own error."""
    lost = psycopg.OperationalError("server closed the connection unexpectedly")

    def matches(query: Any, *_: Any) -> bool:
        return statement in (query if isinstance(query, bytes) else str(query).encode())

    return fail_first_call(conn, "execute", lost, after_commit=after_commit, when=matches)


def transfers_in_store(app: LedgerApplication) -> int:
    notifications = app.recorder.select_notifications(1, 1_000_000)
    return sum(1 for n in notifications if n.topic.endswith("TokensTransferred"))


@pytest.mark.parametrize("after_commit", [True, False], ids=["lost-after-append", "lost-before-append"])
def test_a_transfer_whose_commit_was_not_acknowledged_is_made_once(
    pg_app: LedgerApplication, after_commit: bool
) -> None:
    """The append statement of the writer turn loses its connection (having run, or before):
    the turn's transaction is aborted, the batch is looked up, found absent, sent again."""
    asset_id = open_asset(pg_app)
    onboard(pg_app, "alice")
    onboard(pg_app, "bob")
    holding(pg_app, asset_id, "alice", 100)
    before = transfers_in_store(pg_app)
    recorder = pg_app.recorder
    kept = recorder._append_conn
    assert kept is not None  # the set-aside connection, used by the appends above
    calls = lose_connection_once_on(kept, after_commit=after_commit)

    outcome = pg_app.transfer(asset_id, "alice", "bob", 30)  # no idempotency key

    assert calls[0] == 1  # only the first use of that connection: after the error it went back
    assert recorder._append_conn is not kept
    assert transfers_in_store(pg_app) == before + 1
    assert outcome.position == pg_app.admin.head_position()
    balances = pg_app.get_asset(asset_id).balances
    assert (balances["alice"], balances["bob"]) == (70, 30)
    assert pg_app.admin.verify().ok


def test_a_transfer_committed_in_its_turn_without_acknowledgement_is_made_once(
    pg_app: LedgerApplication,
) -> None:
    asset_id = open_asset(pg_app)
    onboard(pg_app, "alice")
    onboard(pg_app, "bob")
    holding(pg_app, asset_id, "alice", 100)
    calls = lose_connection_once(pg_app.recorder, "_append_in_one_call", after_commit=True)

    outcome = pg_app.transfer(asset_id, "alice", "bob", 30)

    assert calls[0] == 1  # found in the store: not sent again
    assert transfers_in_store(pg_app) == 1
    assert outcome.position == pg_app.admin.head_position()
    balances = pg_app.get_asset(asset_id).balances
    assert (balances["alice"], balances["bob"]) == (70, 30)
    assert pg_app.admin.verify().ok


def test_a_writer_turn_that_loses_its_connection_before_the_command_is_tried_again(
    pg_app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real turn's first statement (BEGIN, the writer lock, the catch-up read) meets a dropped
    connection: nothing was sent, so the turn starts again on another connection. (An
    optimistic turn sends no BEGIN: its claim and append are one statement, tested in
    `test_optimistic_turns.py`.)"""
    monkeypatch.setattr(commit, "QUIET_TURNS", 10**9)  # real turns only
    asset_id = open_asset(pg_app)
    onboard(pg_app, "alice")
    onboard(pg_app, "bob")
    holding(pg_app, asset_id, "alice", 100)
    kept = pg_app.recorder._append_conn
    assert kept is not None
    calls = lose_connection_once_on(kept, after_commit=False, statement=b"BEGIN")

    pg_app.transfer(asset_id, "alice", "bob", 30)

    assert calls[0] == 1
    assert transfers_in_store(pg_app) == 1
    balances = pg_app.get_asset(asset_id).balances
    assert (balances["alice"], balances["bob"]) == (70, 30)
    assert pg_app.admin.verify().ok


def raw_events(count: int) -> list[StoredEvent]:
    return [StoredEvent(uuid4(), 1, "tests:Raw", json.dumps({"i": i}).encode()) for i in range(count)]


@pytest.mark.parametrize("size", [3, UNNEST_FROM + 6], ids=["one-call", "pipelined"])
def test_a_batch_committed_without_acknowledgement_returns_its_positions(
    pg_app: LedgerApplication, size: int
) -> None:
    recorder = pg_app.recorder
    step = "_append_in_one_call" if size < UNNEST_FROM else "_append_in_pipeline"
    head = pg_app.admin.head_position()
    calls = lose_connection_once(recorder, step, after_commit=True)
    info: dict[str, Any] = {}

    positions = recorder.insert_events(raw_events(size), commit_info=info)

    assert calls[0] == 1  # found in the store: not sent again
    assert list(positions) == list(range(head + 1, head + size + 1))
    assert pg_app.admin.head_position() == head + size
    assert info["prev_position"] is None  # not known: the committer reloads
    assert pg_app.admin.verify().ok


def test_another_writers_events_at_the_same_versions_are_a_conflict(pg_app: LedgerApplication) -> None:
    """The connection is lost before the batch reached the server, and meanwhile another
    writer appended other events at the same streams and versions: that is a conflict,
    not our batch."""
    recorder = pg_app.recorder
    ours = raw_events(2)
    theirs = [StoredEvent(e.originator_id, e.originator_version, e.topic, b'{"other": true}') for e in ours]
    head = pg_app.admin.head_position()
    lose_connection_once(
        recorder, "_append_in_one_call", after_commit=False, before=lambda: recorder.insert_events(theirs)
    )

    with pytest.raises(IntegrityError):
        recorder.insert_events(ours)
    assert pg_app.admin.head_position() == head + 2  # theirs only
    assert pg_app.admin.verify().ok


def test_a_batch_committed_late_by_a_lost_attempt_is_found_when_its_copy_is_refused(
    pg_app: LedgerApplication,
) -> None:
    """The first attempt's connection is lost and the store, asked at once, does not have
    the batch yet; the lost attempt's server process commits it just after. Sent again,
    the copy is refused by the unique key, and the batch is then found: not a conflict."""
    recorder = pg_app.recorder
    events = raw_events(2)
    head = pg_app.admin.head_position()
    lose_connection_once(recorder, "_append_in_one_call", after_commit=False)
    original = recorder._landed
    lookups = [0]

    def late_commit(batch: list[StoredEvent], kwargs: dict[str, Any]) -> list[int] | None:
        lookups[0] += 1
        found = original(batch, kwargs)
        if lookups[0] == 1:
            assert found is None
            recorder._append_in_one_call(batch, commit_info={})  # the lost attempt, committing late
        return found

    recorder._landed = late_commit  # type: ignore[method-assign]
    positions = recorder.insert_events(events)

    assert lookups[0] == 2
    assert list(positions) == [head + 1, head + 2]
    assert pg_app.admin.head_position() == head + 2
    assert pg_app.admin.verify().ok


def test_a_store_that_never_answers_again_leaves_the_outcome_unknown(
    pg_app: LedgerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed, then the store keeps failing every lookup: the caller is told the outcome
    is unknown (`outcome_unknown`), not that the command failed."""
    monkeypatch.setattr(store, "APPEND_RETRY_WAIT", 0.0)
    asset_id = open_asset(pg_app)
    onboard(pg_app, "alice")
    onboard(pg_app, "bob")
    holding(pg_app, asset_id, "alice", 100)
    recorder = pg_app.recorder
    lose_connection_once(recorder, "_append_in_one_call", after_commit=True)

    def unreachable(*_: Any) -> list[int] | None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(recorder, "_landed", unreachable)
    monkeypatch.setattr(recorder, "_append_in_one_call", lambda *_, **__: unreachable())

    with pytest.raises(OutcomeUnknownError) as raised:
        pg_app.transfer(asset_id, "alice", "bob", 30)
    assert raised.value.code == "outcome_unknown"


def test_a_second_thread_appending_meanwhile_uses_the_pool(pg_app: LedgerApplication) -> None:
    recorder = pg_app.recorder
    head = pg_app.admin.head_position()
    recorder.insert_events(raw_events(1))
    kept = recorder._append_conn
    assert kept is not None
    with recorder._append_lock:  # as if another thread were appending on it right now
        positions = recorder.insert_events(raw_events(2))
    assert list(positions) == [head + 2, head + 3]
    assert recorder._append_conn is kept
    assert pg_app.admin.verify().ok
