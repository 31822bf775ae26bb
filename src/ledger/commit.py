"""Group commit: concurrent commands share one append transaction, rules and hash chain intact.

Callers hand a command (a function of a `UnitOfWork`) to `GroupCommitter.execute`.
Whichever caller holds the commit lock becomes the leader: it runs every queued
command one after the other against the live aggregates, each seeing the
effects of the ones before it, then appends all their events (with their
idempotency records and the chain operations they owe, `ledger.outbox`) in one
transaction. The others wait for their outcome.
Rules are therefore checked against exactly the state the events are appended
on, in the order they are appended, so batching weakens nothing.

Other processes may write too: each batch starts by comparing the store's head
with the position up to which the aggregate cache is known complete, and brings
stale aggregates forward from the store. Appends that collide with another
writer (same aggregate version) fail on the store's unique key; the batch's
commands are then retried one by one against fresh state, a bounded number of
times.

On PostgreSQL that comparison is the start of a writer turn (`writer_turn`): a round
trip before the batch runs; the commands queued while it waited for the writer lock (held
by another process) join the batch. A process whose last `QUIET_TURNS` turns found nobody else's
events runs its batch first and has its append check, in the same round trip, that the
head has not moved (an optimistic turn); its rejections are answered only once that
check passed. If the head did move, nothing was appended: the aggregates the batch
touched are dropped and the batch runs again in a real turn, on the others' events.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Mapper, StoredEvent

from ledger import library, snapshots
from ledger.actor import STATE_KEY, Actor
from ledger.errors import (
    ConcurrencyError,
    IdempotencyKeyReusedError,
    LedgerError,
    NotFoundError,
)
from ledger.outbox import OutboxEntry, chain_operations
from ledger.pauses import gc_paused
from ledger.store import ClaimRefusedError, IdempotencyRecord, StoreAdmin, WriterTurn

A = TypeVar("A", bound=Aggregate)
MAX_BATCH = 512
MAX_ATTEMPTS = 5
MAX_CACHED = 20_000
Rejections = list[tuple["_Pending", LedgerError]]
QUIET_TURNS = 4  # real turns in a row that found no other writer's events before turns go optimistic


@dataclass(frozen=True)
class Outcome:
    """What a command returns: its result fields and the position of its last event."""

    result: dict[str, Any]
    position: int


@dataclass
class Command:
    name: str
    payload: dict[str, Any]
    run: Callable[[UnitOfWork], dict[str, Any]]
    idempotency_key: str | None = None
    actor: Actor | None = None  # recorded on each of its events (`ledger.actor`)
    _request_hash: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def request_hash(self) -> str:
        """What identifies the request an idempotency key came with (computed once: the
        payload is not changed after the command is made)."""
        if self._request_hash is None:
            body = json.dumps({"command": self.name, "payload": self.payload}, sort_keys=True, default=str)
            self._request_hash = hashlib.sha256(body.encode()).hexdigest()
        return self._request_hash


@dataclass
class _Pending:
    """A queued command. `wake` is set when it is done, or when its caller is to lead."""

    command: Command
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    outcome: Outcome | None = None
    error: BaseException | None = None

    def succeed(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.done = True
        self.wake.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done = True
        self.wake.set()


@dataclass(frozen=True)
class _Ran:
    """A command of the batch that ran and recorded events: to be appended, then answered."""

    pending: _Pending
    events: list[Any]
    result: dict[str, Any]


class _PoisonedBatchError(Exception):
    """A failing command left events on an aggregate: the batch's state cannot be trusted."""


def encode_plain_state(mapper: Mapper[UUID], state: dict[str, Any]) -> bytes:
    """An event state as `mapper` stores it, for a state of JSON values and datetimes only.

    With the library's JSON transcoder (and neither compression nor encryption) orjson
    writes the very bytes the transcoder would, three times as fast; what orjson refuses
    (integers beyond 64 bits, other types) goes through the mapper's transcoder. A UUID,
    which orjson would write as a plain string, is not a plain value: it must not be
    given here.
    """
    transcoder = mapper.transcoder
    if type(transcoder) is JSONTranscoder and mapper.compressor is None and mapper.cipher is None:
        try:
            return orjson.dumps(
                state,
                default=library.transcoder_default(transcoder),
                option=orjson.OPT_PASSTHROUGH_DATETIME,
            )
        except TypeError:
            return transcoder.encode(state)
    encoded = transcoder.encode(state)
    if mapper.compressor is not None:
        encoded = mapper.compressor.compress(encoded)
    if mapper.cipher is not None:
        encoded = mapper.cipher.encrypt(encoded)
    return encoded


class UnitOfWork:
    """The aggregates one command reads and changes, on top of its batch's working set."""

    def __init__(self, committer: GroupCommitter, now: datetime, actor: Actor | None = None) -> None:
        self._committer = committer
        self.now = now
        self._actor = None if actor is None else actor.as_state()
        self._touched: dict[UUID, tuple[Aggregate, int]] = {}
        self._created: list[Any] = []

    def get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        aggregate = self._committer.load(aggregate_id)
        if not isinstance(aggregate, cls):
            raise NotFoundError(f"{what} not found")
        self._touch(aggregate)
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        try:
            self._committer.load(aggregate_id)
        except NotFoundError:
            return False
        return True

    def add(self, aggregate: A) -> A:
        """Takes a newly created aggregate into the batch."""
        self._committer.working[aggregate.id] = aggregate
        self._touched[aggregate.id] = (aggregate, 0)
        return aggregate

    def record_created_state(self, originator_id: UUID, topic: str, state: dict[str, Any]) -> None:
        """Takes the creation event of a new aggregate as the event's topic and state, stored
        as the store's mapper stores the event (bulk records such as mirrored chain logs,
        thousands at a time: neither the event nor the aggregate is built).

        `state` holds JSON values (str keys) and datetimes only: see `encode_plain_state`."""
        if self._actor is not None:
            state = {**state, STATE_KEY: self._actor}
        stored_state = encode_plain_state(self._committer.app.mapper, state)
        self._created.append(StoredEvent(originator_id, 1, topic, stored_state))

    def _touch(self, aggregate: Aggregate) -> None:
        if aggregate.id not in self._touched:
            self._touched[aggregate.id] = (aggregate, len(aggregate.pending_events))

    def new_events(self) -> list[Any]:
        events: list[Any] = []
        for aggregate, before in self._touched.values():
            events.extend(aggregate.pending_events[before:])
        events += self._created
        if self._actor is not None:
            for event in events:
                if type(event) is not StoredEvent:  # stored ones got it in `record_created_state`
                    object.__setattr__(event, STATE_KEY, self._actor)  # stored with the event's state
        return events

    def check_untouched(self) -> None:
        for aggregate, before in self._touched.values():
            if len(aggregate.pending_events) != before:
                raise _PoisonedBatchError


class GroupCommitter:
    """Runs commands in batches and appends each batch in one transaction."""

    def __init__(self, app: Application[UUID], admin: StoreAdmin, clock: Callable[[], datetime]) -> None:
        self.app = app
        self.admin = admin
        self.clock = clock
        self._lock = threading.Lock()  # held by the leader while it runs a batch
        self._mutex = threading.Lock()  # guards the queue and the leadership flag
        self._queue: deque[_Pending] = deque()
        self._leading = False
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._stale: set[UUID] = set()
        self._complete_at: int | None = None
        self._quiet_turns = 0  # real turns in a row that found nobody else's events since
        self._recent_keys: OrderedDict[str, tuple[str, str, int]] = OrderedDict()
        self.working: dict[UUID, Aggregate] = {}

    def execute(self, command: Command) -> Outcome:
        """Queues a command and waits for its outcome; the first waiter in line leads the next batch."""
        if command.idempotency_key is not None:
            _ = command.request_hash  # computed by the caller, not in the leader's batch
        pending = _Pending(command)
        with self._mutex:
            self._queue.append(pending)
            lead = not self._leading
            self._leading = True
        if not lead:
            pending.wake.wait()
        if not pending.done:
            self._lead()
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _lead(self) -> None:
        """Runs one batch, then hands leadership to the oldest waiter, if any."""
        with self._mutex:
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
        try:
            with self._lock, gc_paused():
                self._run_batch(batch)
        finally:
            with self._mutex:
                if self._queue:
                    self._queue[0].wake.set()
                else:
                    self._leading = False

    def read(self, aggregate_id: UUID) -> Aggregate:
        """A copy of the current state of an aggregate, for the application's own lookups."""
        with self._lock:
            try:
                self._refresh()
                return copy.deepcopy(self.load(aggregate_id))
            finally:
                self.working = {}

    # ----- under the lock -----

    def load(self, aggregate_id: UUID) -> Aggregate:
        aggregate = self.working.get(aggregate_id) or self._cache.get(aggregate_id)
        if aggregate is not None and aggregate_id in self._stale:
            for event in self.app.events.get(aggregate_id, gt=aggregate.version):
                aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
            self._stale.discard(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self.app.repository.get(aggregate_id)  # from its latest snapshot
            except AggregateNotFoundError:
                raise NotFoundError(f"{aggregate_id} not found") from None
            snapshots.refresh_if_stale(self.app, aggregate)
        assert aggregate is not None
        self.working[aggregate_id] = aggregate
        return aggregate

    def _refresh(self) -> None:
        """Marks the cache stale if anyone appended since it was known complete."""
        head = self.admin.head_position()
        if head != self._complete_at:
            self._mark_stale()
            self._complete_at = head

    def _catch_up(self, turn: WriterTurn) -> None:
        """Brings the cached aggregates forward by the events other writers appended since
        the cache was complete (the turn read them); when they were too many, or the
        position was not known, every cached aggregate is marked stale instead and is
        brought forward from its own stream when it is next used."""
        if turn.rows is None:
            self._mark_stale()
            self._complete_at = turn.head
            return
        to_event = self.app.mapper.to_domain_event
        for _, stream_id, version, topic, state in turn.rows:
            aggregate_id = UUID(str(stream_id))
            aggregate = self._cache.get(aggregate_id)
            if aggregate is None or aggregate_id in self._stale:
                continue
            if version != aggregate.version + 1:
                self._stale.add(aggregate_id)
                continue
            event = to_event(StoredEvent(aggregate_id, version, topic, bytes(state)))
            event.mutate(aggregate)  # type: ignore[attr-defined]
        if turn.rows:
            self._complete_at = turn.rows[-1][0]

    def _mark_stale(self) -> None:
        self._stale.update(self._cache)
        self._complete_at = None

    def _keep(self, aggregates: dict[UUID, Aggregate]) -> None:
        for aggregate_id, aggregate in aggregates.items():
            self._cache[aggregate_id] = aggregate
            self._cache.move_to_end(aggregate_id)
        while len(self._cache) > MAX_CACHED:
            self._stale.discard(self._cache.popitem(last=False)[0])

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            self._attempt(batch, alone=False)
        except (_PoisonedBatchError, IntegrityError, ClaimRefusedError):
            pass  # every command left undone is retried on its own below
        except Exception as error:  # the store is unreachable or broken: every caller learns it
            for pending in batch:
                if not pending.done:
                    pending.fail(error)
        # Left undone: a failed batch's commands, and repeats of an idempotency key
        # first used earlier in the batch (alone, they replay the stored outcome).
        for pending in batch:
            if not pending.done:
                self._retry_alone(pending)

    def _retry_alone(self, pending: _Pending) -> None:
        for _ in range(MAX_ATTEMPTS):
            try:
                self._attempt([pending], alone=True)
            except (_PoisonedBatchError, IntegrityError, ClaimRefusedError):
                continue
            except Exception as error:
                pending.fail(error)
            return
        pending.fail(
            ConcurrencyError(f"{pending.command.name} kept conflicting with other writers; retry later")
        )

    def _attempt(self, batch: list[_Pending], *, alone: bool) -> None:
        """Runs a batch and appends it in this process's writer turn: optimistic while no other
        writer has been seen lately (`QUIET_TURNS`), else a real one, the cache first brought
        forward by the events other processes appended (PostgreSQL). Without turns (SQLite),
        a command retried alone after a conflict first brings the cache up to date: it must
        see every other writer's events."""
        if not alone and self._complete_at is not None and self._quiet_turns >= QUIET_TURNS:
            try:
                self._attempt_in_turn(batch, alone=False, optimistic=True)
                return
            except ClaimRefusedError:
                self._quiet_turns = 0
                batch[:] = [p for p in batch if not p.done]  # replays of stored outcomes stand
        self._attempt_in_turn(batch, alone=alone, optimistic=False)

    def _attempt_in_turn(self, batch: list[_Pending], *, alone: bool, optimistic: bool) -> None:
        self.working = {}
        rejected: Rejections | None = [] if optimistic else None
        try:
            with self.admin.writer_turn(self._complete_at, optimistic=optimistic) as turn:
                if not alone:
                    self._take_arrivals(batch)
                if turn is not None and turn.expected is None:
                    self._catch_up(turn)
                    self._quiet_turns = self._quiet_turns + 1 if turn.rows == [] else 0
                elif alone:
                    self._refresh()
                ran = self._run_commands(batch, alone=alone, rejected=rejected)
                if ran:
                    self._append(ran)  # an optimistic turn's claim passed with it
                elif rejected:
                    self._check_head()
            self._keep(self.working)
        except ClaimRefusedError:
            for aggregate_id in self.working:  # changed by commands run on a stale cache
                self._cache.pop(aggregate_id, None)
            raise
        except BaseException:
            for aggregate_id in self.working:
                self._cache.pop(aggregate_id, None)
            self._mark_stale()
            raise
        finally:
            self.working = {}
        for pending, error in rejected or ():
            pending.fail(error)

    def _take_arrivals(self, batch: list[_Pending]) -> None:
        """Adds to the batch (in place: the caller retries what is left undone in it) the
        commands queued since it was taken, while its turn was being granted: with other
        processes writing, the writer lock is often waited for, and the commands that queue
        meanwhile would otherwise wait for another turn."""
        with self._mutex:
            while self._queue and len(batch) < MAX_BATCH:
                batch.append(self._queue.popleft())

    def _check_head(self) -> None:
        """Rejections of an optimistic turn that appended nothing stand only if nobody else
        appended since the cache was complete (the store's head, read)."""
        if self.admin.head_position() != self._complete_at:
            raise ClaimRefusedError("another writer appended since this process's cache was complete")

    def _stored_outcomes(self, keys: list[str], *, from_store: bool) -> dict[str, tuple[str, str, int]]:
        """First outcomes of idempotency keys: this process's recent ones, or the store's.

        A key another process used is not in memory; appending it again violates the
        store's unique key, and the command is then retried alone, reading the store.
        """
        if from_store:
            return self.admin.idempotency_records(keys)
        return {key: self._recent_keys[key] for key in keys if key in self._recent_keys}

    def _run_commands(
        self, batch: list[_Pending], *, alone: bool, rejected: Rejections | None = None
    ) -> list[_Ran]:
        """Runs the batch's commands in order; a rejection is answered at once, or kept in
        `rejected` (an optimistic turn: answered once the state it was checked on is known
        to be current)."""
        keys = [p.command.idempotency_key for p in batch if p.command.idempotency_key]
        stored = self._stored_outcomes(keys, from_store=alone)
        ran: list[_Ran] = []
        seen: dict[str, _Pending] = {}
        now = self.clock()
        for pending in batch:
            key = pending.command.idempotency_key
            if key is not None and key in stored:
                self._replay(pending, stored[key])
                continue
            if key is not None and key in seen:
                continue  # replayed once the first use of the key is committed
            uow = UnitOfWork(self, now, pending.command.actor)
            try:
                result = pending.command.run(uow)
            except LedgerError as error:
                uow.check_untouched()
                if key is not None and not alone:
                    continue  # a rejection may be a replay of another process's success: check alone
                if rejected is not None:
                    rejected.append((pending, error))
                else:
                    pending.fail(error)
                continue
            except Exception:
                uow.check_untouched()
                raise
            if key is not None:
                seen[key] = pending
            new_events = uow.new_events()
            assert new_events, f"{pending.command.name} recorded nothing"
            ran.append(_Ran(pending, new_events, result))
        return ran

    def _replay(self, pending: _Pending, stored: tuple[str, str, int]) -> None:
        request_hash, response, position = stored
        if request_hash != pending.command.request_hash:
            pending.fail(IdempotencyKeyReusedError("this Idempotency-Key was used with another request"))
        else:
            pending.succeed(Outcome(json.loads(response), position))

    def _append(self, ran: list[_Ran]) -> None:
        """Appends the events of the commands that ran, in one transaction, then answers them."""
        events = [event for r in ran for event in r.events]
        records = self._idempotency_records(ran)
        outbox = chain_operations(events, self.working)
        positions, prev_position = self._store(events, records, outbox)
        appended = self._collect_appended()
        self._note_appended(positions, prev_position, records)
        self._wake(ran, positions)
        self._take_due_snapshots(appended)

    @staticmethod
    def _idempotency_records(ran: list[_Ran]) -> list[IdempotencyRecord]:
        """The first outcome of each command sent with an idempotency key, with the index of
        its last event in the batch (the store turns it into a position)."""
        records: list[IdempotencyRecord] = []
        end = 0
        for r in ran:
            end += len(r.events)
            key = r.pending.command.idempotency_key
            if key is not None:
                records.append(
                    IdempotencyRecord(
                        key, r.pending.command.request_hash, json.dumps(r.result, default=str), end - 1
                    )
                )
        return records

    def _store(
        self, events: list[Any], records: list[IdempotencyRecord], outbox: list[OutboxEntry]
    ) -> tuple[list[int], int | None]:
        """The events' positions, and the position before them (None: not known, a commit
        found after a lost connection)."""
        info: dict[str, Any] = {}
        to_stored = self.app.mapper.to_stored_event
        stored = [e if type(e) is StoredEvent else to_stored(e) for e in events]
        ids = self.app.recorder.insert_events(stored, idempotency=records, outbox=outbox, commit_info=info)
        assert ids is not None and len(ids) == len(stored)
        return list(ids), info.get("prev_position")

    def _collect_appended(self) -> dict[UUID, int]:
        """How many events each aggregate of the batch had appended (now collected)."""
        return {aggregate.id: len(aggregate.collect_events()) for aggregate in self.working.values()}

    def _note_appended(
        self, positions: list[int], prev_position: int | None, records: list[IdempotencyRecord]
    ) -> None:
        """The cache's bookkeeping: how far it is complete, and the outcomes of the keys used."""
        if prev_position is not None and prev_position == self._complete_at:
            self._complete_at = positions[-1]
        else:
            self._quiet_turns = 0
            # Someone else appended since our cache was complete: it is brought
            # forward from the store, aggregate by aggregate, as they are used.
            self._mark_stale()
            self._stale.update(self.working)
        for record in records:
            self._remember(
                record.key, (record.request_hash, record.response, positions[record.last_event_index])
            )

    @staticmethod
    def _wake(ran: list[_Ran], positions: list[int]) -> None:
        """Answers each command with its result and the position of its last event."""
        end = 0
        for r in ran:
            end += len(r.events)
            r.pending.succeed(Outcome(r.result, positions[end - 1]))

    def _take_due_snapshots(self, appended: dict[UUID, int]) -> None:
        for aggregate_id, count in appended.items():
            aggregate = self.working[aggregate_id]
            if count and snapshots.due(aggregate.version - count, aggregate.version):
                snapshots.take(self.app, aggregate)

    def _remember(self, key: str, outcome: tuple[str, str, int]) -> None:
        self._recent_keys[key] = outcome
        while len(self._recent_keys) > MAX_CACHED:
            self._recent_keys.popitem(last=False)
