"""The event store: the library's recorders, hardened for a register of record.

On top of `eventsourcing`'s PostgreSQL and SQLite application recorders this adds,
inside the very transaction that appends the events:

- a hash chain: `hash_n = sha256(hash_{n-1} || canonical record n)`, one row per
  event in `ledger_event_hashes`, linked to the previous position;
- idempotency records: the first result of a command sent with an idempotency key;
- the chain outbox: operations owed to a bound token (`ledger.outbox`);
- triggers that refuse UPDATE, DELETE and TRUNCATE of the history.

`StoreAdmin` reads the store for auditors: verify the chain, export it as JSON
Lines, import such a file into an empty store, and answer "which version of this
aggregate was current at global position p".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.errors import IntegrityViolationError, OutcomeUnknownError, ValidationError
from ledger.outbox import DONE, OPEN_STATES, PENDING, OutboxEntry

EVENTS_TABLE = "ledger_events"
HASHES_TABLE = "ledger_event_hashes"
IDEMPOTENCY_TABLE = "ledger_idempotency"
OUTBOX_TABLE = "ledger_outbox"
LOCK_FUNCTION = "ledger_lock_events"  # takes the table lock of appends for the runtime role (selfcheck)
OUTBOX_COLUMNS = (
    "position, asset_id, kind, payload, state, attempts, nonce, tx_hash, raw_tx, error, "
    "block_number, targets, done_targets, updated_at"
)
GENESIS = bytes(32)
CREATE_LOCK = 0x4C454447  # advisory lock key serialising store creation ("LEDG")
OUTBOX_LOCK = 0x4F555442  # advisory lock key held by the worker sending to the chain ("OUTB")
BATCH = 5000
UNNEST_FROM = 64  # hash links of batches this large go in one statement
APPEND_ATTEMPTS = 10  # as the library's recorder retries a lost connection
APPEND_RETRY_WAIT = 0.2  # seconds
APPEND_CONNECTION_WAIT = 0.05  # seconds to wait for a connection to set aside, else use the pool
WRITER_LOCK = 0x57524954  # advisory lock key: one writing process at a time per store ("WRIT")
CATCH_UP_LIMIT = 1000  # events another writer appended that a turn reads; more: the cache goes stale


def canonical_record(position: int, stream_id: UUID | str, version: int, topic: str, state: bytes) -> bytes:
    """The bytes a hash covers: every stored field of the event, unambiguously delimited."""
    stream = stream_id if isinstance(stream_id, UUID) else UUID(str(stream_id))
    return f"{position}\n{stream}\n{version}\n{topic}\n".encode() + state


def chain_hash(prev_hash: bytes, record: bytes) -> bytes:
    return hashlib.sha256(prev_hash + record).digest()


@dataclass(frozen=True)
class IdempotencyRecord:
    """The first outcome of a command sent with an idempotency key."""

    key: str
    request_hash: str
    response: str
    last_event_index: int


@dataclass
class WriterTurn:
    """A writing process's turn at the store (PostgreSQL): the store-wide writer lock held in an
    open transaction, and what other writers appended since the caller's cache was complete.

    `rows` are those events as `(position, stream id, version, topic, state)`, in order, when
    `after` was known and they are at most `CATCH_UP_LIMIT`; else None, and `head` is the
    store's head (the caller's cache must then be brought forward stream by stream)."""

    conn: psycopg.Connection[DictRow]
    rows: list[tuple[Any, ...]] | None
    head: int | None
    alive: bool = True  # False once its batch was sent, or the turn ended
    failed: bool = False  # its batch met an error: the connection's state is not known


@dataclass(frozen=True)
class StoredRecord:
    """One row of the history as it is stored: the event and its link in the hash chain."""

    position: int
    stream_id: UUID
    version: int
    topic: str
    state: bytes
    prev_position: int | None
    hash: bytes | None


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing the hash chain, as `ledger verify` and the API report it."""

    ok: bool
    events_checked: int
    head_position: int
    head_hash: str | None
    first_invalid_position: int | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def hash_rows(
    stored_events: Sequence[StoredEvent], positions: Sequence[int], prev_position: int, prev_hash: bytes
) -> list[tuple[int, int, bytes]]:
    rows = []
    for event, position in zip(stored_events, positions, strict=True):
        prev_hash = chain_hash(
            prev_hash,
            canonical_record(
                position, event.originator_id, event.originator_version, event.topic, event.state
            ),
        )
        rows.append((position, prev_position, prev_hash))
        prev_position = position
    return rows


def idempotency_rows(
    records: Iterable[IdempotencyRecord], positions: Sequence[int]
) -> list[tuple[str, str, str, int]]:
    return [(r.key, r.request_hash, r.response, positions[r.last_event_index]) for r in records]


def outbox_rows(entries: Iterable[OutboxEntry], positions: Sequence[int]) -> list[tuple[Any, ...]]:
    return [
        (positions[e.event_index], e.asset_id, e.kind, json.dumps(e.payload, sort_keys=True), PENDING)
        for e in entries
    ]


INSERT_OUTBOX = "INSERT INTO {} (position, asset_id, kind, payload, state) VALUES (%s, %s, %s, %s, %s)"


APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}(
    ids {id_type}[], versions bigint[], topics text[], states bytea[],
    keys text[], request_hashes text[], responses text[], key_events integer[],
    entry_events integer[], entry_assets text[], entry_kinds text[], entry_payloads text[]
) RETURNS bigint[] LANGUAGE plpgsql AS $fn$
DECLARE
    positions bigint[];
    prev_position bigint;
    prev_hash bytea;
    links bytea[];
BEGIN
    SET LOCAL lock_timeout = '{lock_timeout}s';
    LOCK TABLE {events} IN EXCLUSIVE MODE;
    NOTIFY {channel};
    WITH inserted AS (
        INSERT INTO {events} (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states)
        RETURNING notification_id
    )
    SELECT array_agg(notification_id ORDER BY notification_id) INTO positions FROM inserted;
    SELECT position, hash INTO prev_position, prev_hash FROM {hashes} ORDER BY position DESC LIMIT 1;
    IF NOT FOUND THEN
        prev_position := 0;
        prev_hash := decode(repeat('00', 32), 'hex');
    END IF;
    positions := array_prepend(prev_position, positions);
    FOR i IN 1 .. cardinality(ids) LOOP
        -- canonical_record: position, stream id, version and topic, each ended by a newline, then the state
        prev_hash := sha256(prev_hash || convert_to(
            positions[i + 1]::text || chr(10) || ids[i]::uuid::text || chr(10) || versions[i]::text
            || chr(10) || topics[i] || chr(10), 'UTF8') || states[i]);
        links[i] := prev_hash;
    END LOOP;
    INSERT INTO {hashes} (position, prev_position, hash)
    SELECT * FROM unnest(positions[2:], positions[:cardinality(ids)], links);
    INSERT INTO {idempotency} (key, request_hash, response, position)
    SELECT k, h, r, positions[e + 2]
    FROM unnest(keys, request_hashes, responses, key_events) AS t(k, h, r, e);
    INSERT INTO {outbox} (position, asset_id, kind, payload, state)
    SELECT positions[e + 2], a, k, p, {pending}
    FROM unnest(entry_events, entry_assets, entry_kinds, entry_payloads) AS t(e, a, k, p);
    RETURN positions;
END
$fn$
"""


# psycopg's errors as the library's `PostgresDatastore.get_connection` translates them
# (the first class that matches, subclasses first).
TRANSLATED_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
    (psycopg.Error, PersistenceError),
)


def translated(error: psycopg.Error) -> PersistenceError:
    kind = next(ours for theirs, ours in TRANSLATED_ERRORS if isinstance(error, theirs))
    return kind(str(error))


class LedgerPostgresRecorder(PostgresApplicationRecorder):
    """PostgreSQL recorder keeping the library's table lock + NOTIFY write path."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = EVENTS_TABLE) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # The runtime role may not LOCK the table IN EXCLUSIVE MODE (that takes UPDATE, DELETE
        # or TRUNCATE privilege): the owner's function takes the very same lock for it.
        self.lock_table_statements[1:] = [
            SQL("SELECT {}.{}()").format(Identifier(datastore.schema), Identifier(LOCK_FUNCTION))
        ]
        self._append_lock = threading.Lock()  # held while the set-aside connection is in use
        self._append_conn: psycopg.Connection[DictRow] | None = None
        self._append_since = 0.0  # when it was taken from the pool (monotonic clock)
        self._append_released = False
        self._turn: WriterTurn | None = None  # the open writer turn of this process's leader, if any
        schema = Identifier(datastore.schema)
        rows = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s"
        )
        self._select_rows = rows.format(schema, Identifier(events_table_name), SQL("")).as_bytes(None)
        self._select_rows_to = rows.format(
            schema, Identifier(events_table_name), SQL(" AND notification_id <= %s")
        ).as_bytes(None)
        self.hashes = SQL("{}.{}").format(schema, Identifier(HASHES_TABLE))
        self.idempotency = SQL("{}.{}").format(schema, Identifier(IDEMPOTENCY_TABLE))
        self.events = SQL("{}.{}").format(schema, Identifier(events_table_name))
        self.outbox = SQL("{}.{}").format(schema, Identifier(OUTBOX_TABLE))
        refuse = SQL("{}.{}").format(schema, Identifier("ledger_refuse_change"))
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, "
                "prev_position bigint NOT NULL, hash bytea NOT NULL)"
            ).format(self.hashes),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, request_hash text NOT NULL, "
                "response text NOT NULL, position bigint NOT NULL)"
            ).format(self.idempotency),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq bigserial PRIMARY KEY, position bigint NOT NULL, "
                "asset_id text, kind text NOT NULL, payload text NOT NULL, state text NOT NULL, "
                "attempts integer NOT NULL DEFAULT 0, nonce bigint, tx_hash text, raw_tx text, error text, "
                "block_number bigint, targets text, done_targets text, updated_at text)"
            ).format(self.outbox),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (state, seq)").format(
                Identifier(f"{OUTBOX_TABLE}_open"), self.outbox
            ),
            SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'ledger history is append-only: % on % refused', TG_OP, TG_TABLE_NAME "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            ).format(refuse),
        ]
        # A small batch (a group commit) is appended by one call of this function, in
        # autocommit: the statements of the pipelined path below, with the hash links
        # computed by the server exactly as `hash_rows` computes them, in one round trip.
        self.append_function = SQL("{}.{}").format(schema, Identifier("ledger_append"))
        self.sql_create_statements.append(
            SQL(APPEND_FUNCTION).format(
                function=self.append_function,
                id_type=SQL(datastore.originator_id_type),
                lock_timeout=SQL(str(int(datastore.lock_timeout))),
                events=self.events,
                channel=Identifier(self.channel_name),
                hashes=self.hashes,
                idempotency=self.idempotency,
                outbox=self.outbox,
                pending=Literal(PENDING),
            )
        )
        for table, name in ((self.events, events_table_name), (self.hashes, HASHES_TABLE)):
            self.sql_create_statements += [
                SQL(
                    "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE ON {} "
                    "FOR EACH ROW EXECUTE FUNCTION {}()"
                ).format(Identifier(f"{name}_refuse_row_change"), table, refuse),
                SQL(
                    "CREATE OR REPLACE TRIGGER {} BEFORE TRUNCATE ON {} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                ).format(Identifier(f"{name}_refuse_truncate"), table, refuse),
            ]
        self.select_last_hash = SQL("SELECT position, hash FROM {} ORDER BY position DESC LIMIT 1").format(
            self.hashes
        )
        self.insert_hash = SQL("INSERT INTO {} (position, prev_position, hash) VALUES (%s, %s, %s)").format(
            self.hashes
        )
        self.insert_idempotency = SQL(
            "INSERT INTO {} (key, request_hash, response, position) VALUES (%s, %s, %s, %s)"
        ).format(self.idempotency)
        # Rendered once: psycopg would otherwise compose these statements on every append.
        self.insert_events_statement = self.insert_events_statement.as_bytes(None)  # type: ignore[assignment]
        self._lock_sql = [cast(Composed, lock).as_bytes(None) for lock in self.lock_table_statements]
        self._notify_sql = SQL("NOTIFY {0}").format(Identifier(self.channel_name)).as_bytes(None)
        self.select_last_hash = self.select_last_hash.as_bytes(None)  # type: ignore[assignment]
        self.insert_hash = self.insert_hash.as_bytes(None)  # type: ignore[assignment]
        self.insert_hashes = (
            SQL(
                "INSERT INTO {} (position, prev_position, hash) "
                "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bytea[])"
            )
            .format(self.hashes)
            .as_bytes(None)
        )
        self.insert_idempotency = self.insert_idempotency.as_bytes(None)  # type: ignore[assignment]
        self._append_sql = (
            SQL(
                "SELECT {}(%b::{}[], %b::bigint[], %b::text[], %b::bytea[], %b::text[], %b::text[], "
                "%b::text[], %b::integer[], %b::integer[], %b::text[], %b::text[], %b::text[])"
            )
            .format(self.append_function, SQL(datastore.originator_id_type))
            .as_bytes(None)
        )
        self.insert_outbox = SQL(INSERT_OUTBOX).format(self.outbox).as_bytes(None)
        self._select_landed = (
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
                "WHERE (originator_id, originator_version) IN (SELECT * FROM unnest(%b::{}[], %b::bigint[]))"
            )
            .format(self.events, SQL(datastore.originator_id_type))
            .as_bytes(None)
        )
        self._writer_scope = zlib.crc32(datastore.schema.encode()) - 2**31
        self._turn_timeout = f"SET LOCAL lock_timeout = '{int(datastore.lock_timeout)}s'".encode()
        self._select_head = SQL("SELECT COALESCE(MAX(notification_id), 0) AS head FROM {}").format(
            self.events
        ).as_bytes(None)
        self._insert_columns = (
            SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::{}[], %b::bigint[], %b::text[], %b::bytea[]) "
                "RETURNING notification_id"
            )
            .format(self.events, SQL(datastore.originator_id_type))
            .as_bytes(None)
        )

    def select_event_rows(self, start: int, limit: int, stop: int | None = None) -> list[tuple[Any, ...]]:
        """The events after `start` (up to `stop`) as plain `(position, originator_id, version,
        topic, state)` tuples: what `select_notifications` returns, without a dict and a
        `Notification` made per row (the projection runner reads the whole history this way)."""
        statement = self._select_rows if stop is None else self._select_rows_to
        params = (start, limit) if stop is None else (start, stop, limit)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params, prepare=True, binary=True)
            return curs.fetchall()

    def _lock_table(self, curs: Any) -> None:
        for statement in self._lock_sql:
            curs.execute(statement, prepare=True)

    def _notify_channel(self, curs: Any) -> None:
        curs.execute(self._notify_sql)

    def create_table(self) -> None:
        """Creates or hardens the store; processes starting at once take turns (no deadlock)."""
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (CREATE_LOCK,))
            try:
                from ledger import selfcheck  # it reads this module's recorders

                selfcheck.before_creating(self)
                super().create_table()
                selfcheck.after_creating(self)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (CREATE_LOCK,))

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Appends a batch exactly once, also when the connection is lost while it commits.

        The fate of a batch whose commit was not acknowledged is unknown. The library
        would append it again; the copy, refused by the unique (stream, version) key,
        would look like another writer's conflict, and the committer would run the
        batch's commands again on fresh state: a transfer sent without an idempotency
        key would be made twice. Here the store is asked, after such a loss, whether
        the batch landed (every event at its stream and version, with the very same
        topic and state): if it did, its positions are returned as if the commit had
        been acknowledged; if none of it did, it is sent again.
        """
        kwargs.setdefault("commit_info", {})
        if not stored_events:
            return []
        send = self._append_in_one_call if len(stored_events) < UNNEST_FROM else self._append_in_pipeline
        lost: PersistenceError | None = None  # the last lost connection: an attempt may have committed
        for _ in range(APPEND_ATTEMPTS):
            try:
                return send(stored_events, **kwargs)
            except IntegrityError:
                if lost is None:
                    raise  # another writer's events at these versions, or an idempotency key used already
                landed = self._look_up(stored_events, kwargs, lost)
                if landed is None:
                    raise
                return landed  # an unacknowledged attempt had committed it after all
            except (InterfaceError, OperationalError) as error:
                lost = error
                time.sleep(APPEND_RETRY_WAIT)
                try:
                    landed = self._landed(stored_events, kwargs)
                except (InterfaceError, OperationalError):
                    continue  # sent again: a copy of a batch that did commit is refused, then looked up
                if landed is not None:
                    return landed
        assert lost is not None
        landed = self._look_up(stored_events, kwargs, lost)
        if landed is not None:
            return landed
        raise lost  # known not to be in the store: safe to send again later

    def _look_up(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any], lost: PersistenceError
    ) -> list[int] | None:
        """`_landed`, asked until the store answers; `OutcomeUnknownError` if it never does."""
        for _ in range(APPEND_ATTEMPTS):
            try:
                return self._landed(stored_events, kwargs)
            except (InterfaceError, OperationalError):
                time.sleep(APPEND_RETRY_WAIT)
        raise OutcomeUnknownError(
            "the store stopped answering while this command was committed and did not say whether "
            "it was: look it up, or send it again with the same Idempotency-Key"
        ) from lost

    @contextmanager
    def writer_turn(self, after: int | None) -> Iterator[WriterTurn]:
        """This process's turn at writing: the store-wide writer lock, held until the turn's
        small batch is committed (`_append_in_one_call`) or the turn ends.

        Processes writing to one store take turns instead of racing: a batch run on state
        another process has since changed would collide on the unique (stream, version)
        key and be run again. The lock is a transaction-level advisory lock taken in the
        same round trip as the read of what the others appended since `after` (the
        position up to which the caller's cache is complete), so a process brings its
        cached aggregates forward from those events instead of reloading them. In one
        process the turn costs one round trip per batch. A turn that cannot start for a lost
        connection (nothing was sent yet) is tried again, as an append is.
        """
        turn_cm, turn = self._open_turn(after)
        with ExitStack() as stack:
            stack.push(turn_cm)
            yield turn

    def _open_turn(self, after: int | None) -> tuple[AbstractContextManager[WriterTurn], WriterTurn]:
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            turn_cm = self._turn_on(after)
            try:
                return turn_cm, turn_cm.__enter__()
            except (InterfaceError, OperationalError):
                if attempt == APPEND_ATTEMPTS:
                    raise
                time.sleep(APPEND_RETRY_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _turn_on(self, after: int | None) -> Iterator[WriterTurn]:
        with self._append_connection() as conn:
            with conn.pipeline():
                conn.execute(b"BEGIN")
                conn.execute(self._turn_timeout)
                conn.execute(b"SELECT pg_advisory_xact_lock(%s, %s)", (WRITER_LOCK, self._writer_scope))
                cursor = cast(Any, conn).cursor(row_factory=tuple_row)
                if after is None:
                    cursor.execute(self._select_head, prepare=True)
                else:
                    cursor.execute(self._select_rows, (after, CATCH_UP_LIMIT + 1), prepare=True, binary=True)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            if after is None:
                turn = WriterTurn(conn, None, int(rows[0][0]))
            else:
                turn = WriterTurn(conn, rows if len(rows) <= CATCH_UP_LIMIT else None, None)
            self._turn = turn
            try:
                yield turn
            finally:
                self._turn = None
                turn.alive = False
                self._end_turn(turn)

    def _end_turn(self, turn: WriterTurn) -> None:
        """Rolls back a turn that appended nothing; a connection that failed in the turn goes
        back to the pool (which rolls it back or replaces it) if it is the set-aside one."""
        conn = turn.conn
        if not turn.failed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return
        if not turn.failed:
            try:
                conn.execute(b"ROLLBACK")
                return
            except psycopg.Error:
                pass
        if conn is self._append_conn:
            self._give_back_append_connection()

    def _append_in_pipeline(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        """The library's append (one pipelined transaction), without its own retry."""
        append = PostgresApplicationRecorder.insert_events.__wrapped__
        positions: Sequence[int] | None = append(self, stored_events, **kwargs)
        assert positions is not None
        return positions

    def _landed(self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]) -> list[int] | None:
        """The positions of a batch found in the store as it was sent; None if no event of it
        is there. Other events at its streams and versions are another writer's: a conflict."""
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                self._select_landed,
                ([e.originator_id for e in stored_events], [e.originator_version for e in stored_events]),
                prepare=True,
            ).fetchall()
        if not rows:
            return None
        found = {(UUID(str(r["originator_id"])), r["originator_version"]): r for r in rows}
        positions = []
        for event in stored_events:
            row = found.get((UUID(str(event.originator_id)), event.originator_version))
            if row is None or row["topic"] != event.topic or bytes(row["state"]) != bytes(event.state):
                raise IntegrityError("another writer appended at the versions of this batch")
            positions.append(int(row["notification_id"]))
        kwargs["commit_info"]["prev_position"] = None  # not known: the committer reloads what it caches
        return positions

    def _append_in_one_call(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """Appends a small batch with its hash links, idempotency records and outbox entries
        by one call of `ledger_append`: one statement, one transaction, one round trip."""
        records: Sequence[IdempotencyRecord] = kwargs.get("idempotency") or ()
        entries: Sequence[OutboxEntry] = kwargs.get("outbox") or ()
        # Empty lists go as NULL (unnest yields no row): psycopg dumps each array in Python.
        params = (
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
            [r.key for r in records] or None,
            [r.request_hash for r in records] or None,
            [r.response for r in records] or None,
            [r.last_event_index for r in records] or None,
            [e.event_index for e in entries] or None,
            [e.asset_id for e in entries] or None,
            [e.kind for e in entries] or None,
            [json.dumps(e.payload, sort_keys=True) for e in entries] or None,
        )
        turn = self._turn
        if turn is not None and turn.alive:
            # In a writer turn: the append and the commit that ends the turn, in one round trip.
            turn.alive = False
            try:
                with turn.conn.pipeline():
                    cursor = turn.conn.execute(self._append_sql, params, prepare=True)
                    turn.conn.execute(b"COMMIT")
                row = cursor.fetchone()
            except psycopg.Error as error:
                # Its fate is unknown: closed, the server aborts the turn's transaction unless
                # it committed, so the lookup that follows finds the truth (and no lock is
                # left held by a transaction nobody will end).
                turn.failed = True
                turn.conn.close()
                raise translated(error) from error
        else:
            with self._append_connection() as conn:
                row = conn.execute(self._append_sql, params, prepare=True).fetchone()
        assert row is not None
        prev_position, *positions = cast(list[int], next(iter(row.values())))
        kwargs["commit_info"]["prev_position"] = prev_position
        return positions

    @contextmanager
    def _append_connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """The connection small batches are appended on: one set aside for them.

        The pool hands its connections out in turn, so each append would otherwise
        meet a server process idle since as many appends ago as the pool holds
        connections, and pay for waking it (a fifth of a small append's latency).
        A second thread appending at the same moment, or a pool with none to spare,
        uses the pool as usual. After any error the
        connection goes back to the pool (which rolls back, replaces or retires it)
        and the next append takes another; so it does once it has been kept as long
        as the pool lets a connection live. Errors are translated as the library
        translates them.
        """
        kept = self._take_append_connection()
        if kept is None:
            with self.datastore.get_connection() as shared:
                yield shared
            return
        try:
            yield kept
        except BaseException as error:
            self._give_back_append_connection()
            if isinstance(error, psycopg.Error):
                raise translated(error) from error
            raise
        finally:
            self._append_lock.release()

    def _take_append_connection(self) -> psycopg.Connection[DictRow] | None:
        """The set-aside connection, with `_append_lock` held; None (lock not held) to use the pool."""
        pool = self.datastore.pool
        if self._append_released or not self._append_lock.acquire(blocking=False):
            return None
        try:
            conn = self._append_conn
            expired = time.monotonic() - self._append_since > pool.max_lifetime
            if conn is not None and (conn.closed or expired):
                self._give_back_append_connection()
                conn = None
            if conn is None:
                timeout = self.datastore.pool_open_timeout
                pool.open(timeout is not None, timeout or 30.0)
                conn = pool.getconn(timeout=APPEND_CONNECTION_WAIT)
                self._append_conn, self._append_since = conn, time.monotonic()
        except psycopg.Error:  # none to spare, or the pool is closing: its own path waits or says why
            self._append_lock.release()
            return None
        return conn

    def _give_back_append_connection(self) -> None:
        conn, self._append_conn = self._append_conn, None
        if conn is not None:
            self.datastore.pool.putconn(conn)

    def release_append_connection(self) -> None:
        """Gives the set-aside connection back to the pool, for good (before the pool is closed)."""
        with self._append_lock:
            self._append_released = True
            self._give_back_append_connection()

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        # The library's write path (table lock, NOTIFY, one INSERT ... RETURNING), with the
        # events sent as four typed arrays in binary rather than an array of a composite
        # type, which psycopg can only dump as text, field by field.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_columns,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )
        # Queued in the same pipeline as the insert, after the table lock that
        # serialises writers: the last hash is the one right before our first event,
        # and it arrives in the same round trip as the new positions.
        hash_cursor = curs.connection.cursor()
        hash_cursor.execute(self.select_last_hash, prepare=True)
        kwargs["commit_info"]["hash_cursor"] = hash_cursor

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert positions is not None
        last = kwargs["commit_info"].pop("hash_cursor").fetchone()
        prev_position, prev_hash = (last["position"], bytes(last["hash"])) if last else (0, GENESIS)
        rows = hash_rows(stored_events, positions, prev_position, prev_hash)
        if len(rows) < UNNEST_FROM:
            curs.executemany(self.insert_hash, rows)
        else:  # one statement for a large batch (a mirror range): arrays instead of a row each
            curs.execute(self.insert_hashes, [list(column) for column in zip(*rows, strict=True)])
        records = kwargs.get("idempotency") or ()
        if records:
            curs.executemany(self.insert_idempotency, idempotency_rows(records, positions))
        entries = kwargs.get("outbox") or ()
        if entries:
            curs.executemany(self.insert_outbox, outbox_rows(entries, positions))
        kwargs["commit_info"]["prev_position"] = prev_position
        return positions


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    """SQLite recorder for the embedded store; the library's writer lock serialises appends."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = EVENTS_TABLE) -> None:
        super().__init__(datastore, events_table_name)

    def create_table(self) -> None:
        from ledger import selfcheck  # it reads this module's recorders

        selfcheck.before_creating(self)
        super().create_table()
        selfcheck.after_creating(self)

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements += [
            f"CREATE TABLE IF NOT EXISTS {HASHES_TABLE} (position INTEGER PRIMARY KEY, "
            "prev_position INTEGER NOT NULL, hash BLOB NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {IDEMPOTENCY_TABLE} (key TEXT PRIMARY KEY, "
            "request_hash TEXT NOT NULL, response TEXT NOT NULL, position INTEGER NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "position INTEGER NOT NULL, asset_id TEXT, kind TEXT NOT NULL, payload TEXT NOT NULL, "
            "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, nonce INTEGER, tx_hash TEXT, "
            "raw_tx TEXT, error TEXT, block_number INTEGER, targets TEXT, done_targets TEXT, "
            "updated_at TEXT)",
            f"CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_open ON {OUTBOX_TABLE} (state, seq)",
        ]
        for table in (self.events_table_name, HASHES_TABLE):
            for operation in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{operation.lower()} "
                    f"BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, "
                    f"'ledger history is append-only: {operation} on {table} refused'); END"
                )
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        assert positions is not None
        c.execute(f"SELECT position, hash FROM {HASHES_TABLE} ORDER BY position DESC LIMIT 1")
        last = c.fetchone()
        prev_position, prev_hash = (last["position"], bytes(last["hash"])) if last else (0, GENESIS)
        c.executemany(
            f"INSERT INTO {HASHES_TABLE} (position, prev_position, hash) VALUES (?, ?, ?)",
            hash_rows(stored_events, positions, prev_position, prev_hash),
        )
        records = kwargs.get("idempotency") or ()
        if records:
            c.executemany(
                f"INSERT INTO {IDEMPOTENCY_TABLE} (key, request_hash, response, position) "
                "VALUES (?, ?, ?, ?)",
                idempotency_rows(records, positions),
            )
        entries = kwargs.get("outbox") or ()
        if entries:
            c.executemany(
                INSERT_OUTBOX.format(OUTBOX_TABLE).replace("%s", "?"), outbox_rows(entries, positions)
            )
        commit_info = kwargs.get("commit_info")
        if commit_info is not None:
            commit_info["prev_position"] = prev_position
        return positions


class _Sql(Protocol):
    """The few statements `StoreAdmin` needs, in the dialect of one database."""

    @property
    def recorder(self) -> LedgerPostgresRecorder | LedgerSQLiteRecorder: ...

    def fetch(self, sql: str, params: Sequence[Any]) -> list[Any]: ...

    def bulk_load(self, records: Iterator[list[StoredRecord]]) -> None: ...

    def execute(self, sql: str, params: Sequence[Any]) -> None: ...

    def advisory_lock(self, key: int) -> AbstractContextManager[bool]: ...

    def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None: ...


class StoreAdmin:
    """Auditor-facing reads of the store: head, verification, export, import, versions at a position."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        if isinstance(recorder, LedgerPostgresRecorder):
            self.sql: _Sql = _PostgresSql(recorder)
            schema = recorder.datastore.schema
            self.events, self.hashes = (
                f'"{schema}".{recorder.events_table_name}',
                f'"{schema}".{HASHES_TABLE}',
            )
            self.idempotency = f'"{schema}".{IDEMPOTENCY_TABLE}'
            self.outbox = f'"{schema}".{OUTBOX_TABLE}'
            self.position = "notification_id"
        elif isinstance(recorder, LedgerSQLiteRecorder):
            self.sql = _SQLiteSql(recorder)
            self.events, self.hashes = recorder.events_table_name, HASHES_TABLE
            self.idempotency = IDEMPOTENCY_TABLE
            self.outbox = OUTBOX_TABLE
            self.position = "rowid"
        else:
            msg = f"unsupported recorder {type(recorder).__name__}"
            raise TypeError(msg)

    @property
    def is_postgres(self) -> bool:
        return isinstance(self.sql, _PostgresSql)

    def table(self, name: str) -> str:
        """A table of the store's database by its name, qualified by the store's schema."""
        if isinstance(self.sql, _PostgresSql):
            return f'"{self.sql.datastore.schema}".{name}'
        return name

    def writer_turn(self, after: int | None) -> AbstractContextManager[WriterTurn | None]:
        """The recorder's writer turn on PostgreSQL; None on SQLite, whose own writer lock
        serialises appends (a process there finds others' appends by the head position)."""
        if isinstance(self.sql, _PostgresSql):
            return self.sql.recorder.writer_turn(after)
        return nullcontext(None)

    def head_position(self) -> int:
        rows = self.sql.fetch(f"SELECT MAX({self.position}) AS head FROM {self.events}", ())
        return int(rows[0]["head"] or 0)

    def version_at(self, stream_id: UUID, position: int) -> int | None:
        """The version of a stream current at a global position (None if it did not exist yet)."""
        rows = self.sql.fetch(
            f"SELECT MAX(originator_version) AS v FROM {self.events} "
            f"WHERE originator_id = %s AND {self.position} <= %s",
            (stream_id, position),
        )
        value = rows[0]["v"]
        return None if value is None else int(value)

    def idempotency_records(self, keys: Sequence[str]) -> dict[str, tuple[str, str, int]]:
        """The stored first outcomes of these idempotency keys: request hash, response, position."""
        if not keys:
            return {}
        marks = ", ".join(["%s"] * len(keys))
        rows = self.sql.fetch(
            f"SELECT key, request_hash, response, position FROM {self.idempotency} WHERE key IN ({marks})",
            list(keys),
        )
        return {row["key"]: (row["request_hash"], row["response"], int(row["position"])) for row in rows}

    def records(self, after: int = 0, stop: int | None = None) -> Iterator[StoredRecord]:
        """Every stored event with its hash link, in position order; orphan hashes appear too."""
        while True:
            rows = self.sql.fetch(
                f"SELECT e.{self.position} AS position, e.originator_id, e.originator_version, e.topic, "
                f"e.state, h.prev_position, h.hash FROM {self.events} e LEFT JOIN {self.hashes} h "
                f"ON h.position = e.{self.position} WHERE e.{self.position} > %s "
                f"ORDER BY e.{self.position} LIMIT {BATCH}",
                (after,),
            )
            orphans = self.sql.fetch(
                f"SELECT h.position, h.prev_position, h.hash FROM {self.hashes} h WHERE h.position > %s "
                f"AND h.position <= %s AND NOT EXISTS (SELECT 1 FROM {self.events} e "
                f"WHERE e.{self.position} = h.position) ORDER BY h.position",
                (after, rows[-1]["position"] if len(rows) == BATCH else 2**62),
            )
            merged = [_record(row) for row in rows] + [_orphan(row) for row in orphans]
            merged.sort(key=lambda r: r.position)
            for record in merged:
                if stop is not None and record.position > stop:
                    return
                yield record
            if len(rows) < BATCH:
                return
            after = rows[-1]["position"]

    def verify(self) -> Verification:
        from ledger.selfcheck import missing_tables  # it reads this module's recorders

        missing = missing_tables(self.sql.recorder)
        if missing:  # never "ok, 0 events" for a history that is not there
            reason = f"history tables missing, dropped outside the ledger: {', '.join(missing)}"
            return Verification(False, 0, 0, None, 1, reason)
        return verify_records(self.records())

    def export(self, out: IO[str]) -> Verification:
        """Writes the history as JSON Lines (one stored event per line) and verifies it on the way."""

        def written() -> Iterator[StoredRecord]:
            for record in self.records():
                out.write(json.dumps(record_to_json(record), separators=(",", ":")) + "\n")
                yield record

        return verify_records(written())

    def import_(self, lines: Iterable[str], reread: Iterable[str]) -> Verification:
        """Loads an export into an empty store; refuses a file whose chain does not verify.

        The file is read twice: once to verify the whole chain before anything is
        written, then to load it in one transaction.
        """
        if self.head_position() or self.sql.fetch(f"SELECT 1 FROM {self.hashes} LIMIT 1", ()):
            raise ValidationError("the store is not empty; import needs an empty store")
        result = verify_records(parse_lines(lines))
        if not result.ok:
            raise IntegrityViolationError(
                f"import refused: {result.reason} at position {result.first_invalid_position}"
            )
        self.sql.bulk_load(_batched(parse_lines(reread)))
        return result


def _record(row: Any) -> StoredRecord:
    return StoredRecord(
        position=int(row["position"]),
        stream_id=UUID(str(row["originator_id"])),
        version=int(row["originator_version"]),
        topic=row["topic"],
        state=bytes(row["state"]),
        prev_position=None if row["prev_position"] is None else int(row["prev_position"]),
        hash=None if row["hash"] is None else bytes(row["hash"]),
    )


def _orphan(row: Any) -> StoredRecord:
    return StoredRecord(
        int(row["position"]), UUID(int=0), 0, "", b"", int(row["prev_position"]), bytes(row["hash"])
    )


def record_to_json(record: StoredRecord) -> dict[str, Any]:
    return {
        "position": record.position,
        "stream_id": str(record.stream_id),
        "version": record.version,
        "topic": record.topic,
        "state": record.state.decode(),
        "prev_position": record.prev_position,
        "hash": record.hash.hex() if record.hash is not None else None,
    }


def parse_lines(lines: Iterable[str]) -> Iterator[StoredRecord]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            yield StoredRecord(
                position=int(data["position"]),
                stream_id=UUID(data["stream_id"]),
                version=int(data["version"]),
                topic=str(data["topic"]),
                state=str(data["state"]).encode(),
                prev_position=None if data["prev_position"] is None else int(data["prev_position"]),
                hash=None if data["hash"] is None else bytes.fromhex(data["hash"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValidationError(f"line {number} is not a ledger export record: {error}") from None


def verify_records(records: Iterable[StoredRecord]) -> Verification:
    """Recomputes the chain and names the first altered, removed or inserted position."""
    prev_position, prev_hash, checked = 0, GENESIS, 0

    def fail(position: int, reason: str) -> Verification:
        return Verification(False, checked, prev_position, prev_hash.hex(), position, reason)

    for record in records:
        if record.hash is None or record.prev_position is None:
            return fail(record.position, "event without a hash: inserted outside the ledger")
        if not record.topic:
            return fail(record.position, "hash without its event: event removed")
        if record.prev_position != prev_position:
            if record.prev_position > prev_position:
                return fail(record.prev_position, "event removed before this position")
            return fail(record.position, "chain link does not follow the previous event: inserted")
        expected = chain_hash(
            prev_hash,
            canonical_record(record.position, record.stream_id, record.version, record.topic, record.state),
        )
        if expected != record.hash:
            return fail(record.position, "event altered: hash does not match")
        prev_position, prev_hash = record.position, expected
        checked += 1
    return Verification(True, checked, prev_position, prev_hash.hex() if checked else None, None, None)


def _batched(records: Iterator[StoredRecord]) -> Iterator[list[StoredRecord]]:
    batch: list[StoredRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class _PostgresSql:
    def __init__(self, recorder: LedgerPostgresRecorder) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore

    def fetch(self, sql: str, params: Sequence[Any]) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(sql.encode(), params)
            return curs.fetchall()

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(sql.encode(), params)

    def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Each statement for each of its rows, all in one transaction."""
        with self.datastore.transaction(commit=True) as curs:
            for sql, rows in statements:
                if rows:
                    curs.executemany(sql.encode(), rows)

    @contextmanager
    def advisory_lock(self, key: int) -> Iterator[bool]:
        # Keyed by the store's schema too: stores in other schemas of the database have their own.
        scope = zlib.crc32(self.datastore.schema.encode()) - 2**31
        with self.datastore.get_connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS held", (key, scope)).fetchone()
            held = bool(row and row["held"])
            try:
                yield held
            finally:
                if held:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (key, scope))

    def bulk_load(self, batches: Iterator[list[StoredRecord]]) -> None:
        r = self.recorder
        insert_event: Composed = SQL(
            "INSERT INTO {} (notification_id, originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s, %s)"
        ).format(r.events)
        with self.datastore.transaction(commit=True) as curs:
            for statement in r.lock_table_statements:
                curs.execute(statement)
            for batch in batches:
                curs.executemany(
                    insert_event, [(x.position, x.stream_id, x.version, x.topic, x.state) for x in batch]
                )
                curs.executemany(r.insert_hash, [(x.position, x.prev_position, x.hash) for x in batch])
            curs.execute(
                SQL(
                    "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), "
                    "(SELECT COALESCE(MAX(notification_id), 0) + 1 FROM {}), false)"
                ).format(r.events),
                (f'"{self.datastore.schema}".{r.events_table_name}',),
            )


class _SQLiteSql:
    def __init__(self, recorder: LedgerSQLiteRecorder) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore

    def fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        sql = sql.replace("%s", "?")
        params = [p.hex if isinstance(p, UUID) else p for p in params]
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return list(c.fetchall())

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(sql.replace("%s", "?"), list(params))

    def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        with self.datastore.transaction(commit=True) as c:
            for sql, rows in statements:
                if rows:
                    c.executemany(sql.replace("%s", "?"), rows)

    @contextmanager
    def advisory_lock(self, key: int) -> Iterator[bool]:
        # The embedded store serves one process: the outbox's in-process lock is enough.
        yield True

    def bulk_load(self, batches: Iterator[list[StoredRecord]]) -> None:
        events = self.recorder.events_table_name
        with self.datastore.transaction(commit=True) as c:
            for batch in batches:
                c.executemany(
                    f"INSERT INTO {events} (rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(x.position, x.stream_id.hex, x.version, x.topic, x.state) for x in batch],
                )
                c.executemany(
                    f"INSERT INTO {HASHES_TABLE} (position, prev_position, hash) VALUES (?, ?, ?)",
                    [(x.position, x.prev_position, x.hash) for x in batch],
                )


@dataclass(frozen=True)
class OutboxRow:
    """One operation owed to the chain and how far its execution has got."""

    seq: int
    position: int
    asset_id: str | None
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    nonce: int | None
    tx_hash: str | None
    raw_tx: str | None
    error: str | None
    block_number: int | None
    targets: list[str] | None
    done_targets: list[str]


def _outbox_row(row: Any) -> OutboxRow:
    return OutboxRow(
        seq=int(row["seq"]),
        position=int(row["position"]),
        asset_id=row["asset_id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        state=row["state"],
        attempts=int(row["attempts"]),
        nonce=None if row["nonce"] is None else int(row["nonce"]),
        tx_hash=row["tx_hash"],
        raw_tx=row["raw_tx"],
        error=row["error"],
        block_number=None if row["block_number"] is None else int(row["block_number"]),
        targets=None if row["targets"] is None else json.loads(row["targets"]),
        done_targets=json.loads(row["done_targets"]) if row["done_targets"] else [],
    )


OUTBOX_FIELDS = frozenset(
    {"state", "attempts", "nonce", "tx_hash", "raw_tx", "error", "block_number", "targets", "done_targets"}
)


class OutboxStore:
    """The chain outbox's rows: written with the events, then advanced by the worker.

    Unlike the history, an outbox row changes as its operation progresses
    (pending -> signed -> done | failed); the outcome itself is recorded as events.
    """

    def __init__(self, admin: StoreAdmin) -> None:
        self.sql, self.table = admin.sql, admin.outbox
        self._local = threading.Lock()

    def _select(self, where: str, params: Sequence[Any], limit: int | None = None) -> list[OutboxRow]:
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self.sql.fetch(
            f"SELECT seq, {OUTBOX_COLUMNS} FROM {self.table} WHERE {where} ORDER BY seq{tail}", params
        )
        return [_outbox_row(row) for row in rows]

    def open_rows(self, limit: int = 100) -> list[OutboxRow]:
        """Operations not yet carried out, oldest first: the order they must reach the chain in."""
        return self._select("state IN (%s, %s)", OPEN_STATES, limit)

    def get(self, seq: int) -> OutboxRow | None:
        rows = self._select("seq = %s", (seq,))
        return rows[0] if rows else None

    def unsettled(self, asset_id: str, final_block: int) -> list[OutboxRow]:
        """Operations on an asset (or on every asset) still open, or done after `final_block`."""
        return self._select(
            "(asset_id = %s OR asset_id IS NULL) AND (state IN (%s, %s) OR "
            "(state = %s AND block_number > %s))",
            (asset_id, *OPEN_STATES, DONE, final_block),
        )

    def all_rows(self) -> list[OutboxRow]:
        return self._select("1 = 1", ())

    def update(self, seq: int, **fields: Any) -> None:
        unknown = set(fields) - OUTBOX_FIELDS
        if unknown:
            msg = f"not outbox fields: {sorted(unknown)}"
            raise ValueError(msg)
        values = [json.dumps(v) if k in ("targets", "done_targets") else v for k, v in fields.items()]
        assignments = ", ".join(f"{name} = %s" for name in fields)
        self.sql.execute(
            f"UPDATE {self.table} SET {assignments}, updated_at = %s WHERE seq = %s",
            [*values, datetime.now(tz=UTC).isoformat(), seq],
        )

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Held by the one worker that may send to the chain now; yields False if another holds it."""
        if not self._local.acquire(blocking=False):
            yield False
            return
        try:
            with self.sql.advisory_lock(OUTBOX_LOCK) as held:
                yield held
        finally:
            self._local.release()
