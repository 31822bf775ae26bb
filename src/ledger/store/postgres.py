"""The PostgreSQL recorder: the library's application recorder, hardened for a register of record.

Inside the very transaction that appends a batch of events it writes the batch's hash
links (`hashchain`), idempotency records and outbox entries (`rows`). A small batch
goes in one call of the server-side `ledger_append` on a connection set aside for
appends; a large one through the library's pipelined write path. A batch whose commit
was not acknowledged is looked up before it is sent again, and processes writing to
one store take turns (`writer_turn`); a process that has seen no other writer for a while
takes its turn optimistically, in the round trip of its append.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
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
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger import library
from ledger.errors import OutcomeUnknownError
from ledger.outbox import PENDING, OutboxEntry
from ledger.store import schema
from ledger.store.hashchain import GENESIS, hash_rows
from ledger.store.rows import IdempotencyRecord, idempotency_rows, outbox_payload, outbox_rows
from ledger.store.schema import (
    APPEND_FUNCTION_NAME,
    EVENTS_TABLE,
    HASHES,
    HASHES_TABLE,
    IDEMPOTENCY,
    IDEMPOTENCY_TABLE,
    LOCK_FUNCTION,
    OUTBOX,
    OUTBOX_INDEX_NAME,
    OUTBOX_TABLE,
    REFUSE_FUNCTION,
)

CREATE_LOCK = 0x4C454447  # advisory lock key serialising store creation ("LEDG")
UNNEST_FROM = 64  # hash links of batches this large go in one statement
APPEND_ATTEMPTS = 10  # as the library's recorder retries a lost connection
APPEND_RETRY_WAIT = 0.2  # seconds
APPEND_CONNECTION_WAIT = 0.05  # seconds to wait for a connection to set aside, else use the pool
WRITER_LOCK = 0x57524954  # advisory lock key: one writing process at a time per store ("WRIT")
CATCH_UP_LIMIT = 1000  # events another writer appended that a turn reads; more: the cache goes stale
SELECT_ROWS = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
    "WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s"
)


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
    # An optimistic turn: nothing sent yet. Its append takes the lock, checks that nothing
    # was appended after this position (else `ClaimRefusedError`, nothing appended) and
    # commits, all in one round trip; `rows` is [] as the caller assumes.
    expected: int | None = None
    # The head the caller's state is current at (known for every turn but one whose catch-up
    # was too long to read): a batch sent again after the turn lost its connection, and with
    # it the lock, claims the lock again and checks that nothing was appended after this.
    confirmed: int | None = None


class ClaimRefusedError(Exception):
    """A writer turn's claim was refused: events were appended after the position the
    caller's state is current at, the lock was not granted in time (`lock_timeout`), or (an
    optimistic turn) the claim did not reach the store before its batch was sent. Nothing of
    the batch was appended by the refused attempt; the caller runs it again in a real turn."""

    def __init__(self, message: str, *, lock_timeout: bool = False) -> None:
        super().__init__(message)
        self.lock_timeout = lock_timeout


# What refuses an optimistic turn's claim (nothing of its batch stays appended): the head
# check's division by zero, or the writer lock not granted within the lock timeout. In a
# pipeline they stop it before the append runs; in the claimed append (one statement, its
# own transaction) the check runs after it and the error undoes it, and so does a unique
# key another writer's events or idempotency keys took first (`CLAIMED_APPEND_REFUSED`).
CLAIM_REFUSED: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.DivisionByZero,
    psycopg.errors.LockNotAvailable,
)
CLAIMED_APPEND_REFUSED = (*CLAIM_REFUSED, psycopg.errors.UniqueViolation)


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
        self.events = self._qualified(events_table_name)
        self.hashes = self._qualified(HASHES_TABLE)
        self.idempotency = self._qualified(IDEMPOTENCY_TABLE)
        self.outbox = self._qualified(OUTBOX_TABLE)
        self.append_function = self._qualified(APPEND_FUNCTION_NAME)
        self.sql_create_statements += self._ledger_create_statements()
        self._render_statements()

    def _qualified(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def _ledger_create_statements(self) -> list[Composed]:
        """The ledger's tables, the append function and the triggers, after the library's table."""
        refuse = self._qualified(REFUSE_FUNCTION)
        statements = [
            SQL(HASHES.create("postgres")).format(self.hashes),
            SQL(IDEMPOTENCY.create("postgres")).format(self.idempotency),
            SQL(OUTBOX.create("postgres")).format(self.outbox),
            SQL(schema.CREATE_OUTBOX_INDEX).format(Identifier(OUTBOX_INDEX_NAME), self.outbox),
            SQL(schema.PG_REFUSE_FUNCTION).format(refuse),
            SQL(schema.APPEND_FUNCTION).format(
                function=self.append_function,
                id_type=SQL(self.datastore.originator_id_type),
                lock_timeout=SQL(str(int(self.datastore.lock_timeout))),
                events=self.events,
                channel=Identifier(self.channel_name),
                hashes=self.hashes,
                idempotency=self.idempotency,
                outbox=self.outbox,
                pending=Literal(PENDING),
            ),
        ]
        for name in (self.events_table_name, HASHES_TABLE):  # the history: append-only
            table = self._qualified(name)
            statements += [
                SQL(schema.PG_REFUSE_ROW_TRIGGER).format(
                    Identifier(f"{name}_refuse_row_change"), table, refuse
                ),
                SQL(schema.PG_REFUSE_TRUNCATE_TRIGGER).format(
                    Identifier(f"{name}_refuse_truncate"), table, refuse
                ),
            ]
        return statements

    def _render_statements(self) -> None:
        """The statements of appends and reads, rendered once: psycopg would otherwise compose
        them on every append."""
        id_type = SQL(self.datastore.originator_id_type)
        self.insert_events_statement = self.insert_events_statement.as_bytes(None)  # type: ignore[assignment]
        self._lock_sql = [cast(Composed, lock).as_bytes(None) for lock in self.lock_table_statements]
        self._notify_sql = SQL("NOTIFY {0}").format(Identifier(self.channel_name)).as_bytes(None)
        self._select_rows = SQL(SELECT_ROWS).format(self.events, SQL("")).as_bytes(None)
        self._select_rows_to = (
            SQL(SELECT_ROWS).format(self.events, SQL(" AND notification_id <= %s")).as_bytes(None)
        )
        self.select_last_hash = SQL(schema.SELECT_LAST_HASH).format(self.hashes).as_bytes(None)
        self.insert_hash = SQL(schema.INSERT_HASH).format(self.hashes).as_bytes(None)
        self.insert_hashes = (
            SQL(
                "INSERT INTO {} (position, prev_position, hash) "
                "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bytea[])"
            )
            .format(self.hashes)
            .as_bytes(None)
        )
        self.insert_idempotency = SQL(schema.INSERT_IDEMPOTENCY).format(self.idempotency).as_bytes(None)
        self.insert_outbox = SQL(schema.INSERT_OUTBOX).format(self.outbox).as_bytes(None)
        self._append_sql = (
            SQL(
                "SELECT {}(%b::{}[], %b::bigint[], %b::text[], %b::bytea[], %b::text[], %b::text[], "
                "%b::text[], %b::integer[], %b::integer[], %b::text[], %b::text[], %b::text[])"
            )
            .format(self.append_function, id_type)
            .as_bytes(None)
        )
        self._select_landed = (
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
                "WHERE (originator_id, originator_version) IN (SELECT * FROM unnest(%b::{}[], %b::bigint[]))"
            )
            .format(self.events, id_type)
            .as_bytes(None)
        )
        self._writer_scope = zlib.crc32(self.datastore.schema.encode()) - 2**31
        self._turn_timeout = f"SET LOCAL lock_timeout = '{int(self.datastore.lock_timeout)}s'".encode()
        self._select_head = (
            SQL("SELECT COALESCE(MAX(notification_id), 0) AS head FROM {}").format(self.events).as_bytes(None)
        )
        # Divides by zero (an error, so the statements after it in the pipeline are skipped
        # and the transaction aborts) when an event lies after the given position. The head
        # is read with MAX (one step down the primary key's index whatever the plan): prepared,
        # `WHERE notification_id > $1` gets a generic plan after five runs, and that plan scans
        # the table from its start.
        self._expect_head = (
            SQL("SELECT 1 / (COALESCE((SELECT MAX(notification_id) FROM {}), 0) <= %s)::int")
            .format(self.events)
            .as_bytes(None)
        )
        # An optimistic turn's claim and append as one statement, in autocommit (its own
        # transaction: the writer lock is held until it commits). Each level is evaluated on
        # the row of the one below it (OFFSET 0 keeps the levels apart): the lock timeout, the
        # writer lock, then `ledger_append`, which returns the position the chain ended at
        # before the batch, read once the lock was held (a function's statements each see
        # what was committed when they start; the statement's own reads would not: they see
        # only what was committed when it began, before it waited for the lock). An event
        # after the expected head divides by zero: the transaction, batch and all, is undone.
        # One statement instead of six in a pipeline (BEGIN, SET, lock, head check, append,
        # COMMIT): 0.4 ms less for a one-event append, in the client's and the server's work.
        self._claimed_append_sql = (
            SQL(
                "SELECT appended.positions FROM (SELECT {}(%b::{}[], %b::bigint[], %b::text[], "
                "%b::bytea[], %b::text[], %b::text[], %b::text[], %b::integer[], %b::integer[], "
                "%b::text[], %b::text[], %b::text[]) AS positions FROM (SELECT "
                "pg_advisory_xact_lock({}, {}) FROM (SELECT set_config('lock_timeout', {}, true)) "
                "AS timeout OFFSET 0) AS locked OFFSET 0) AS appended "
                "WHERE 1 / (appended.positions[1] <= %b::bigint)::int = 1"
            )
            .format(
                self.append_function, id_type, Literal(WRITER_LOCK), Literal(self._writer_scope),
                Literal(f"{int(self.datastore.lock_timeout)}s"),
            )
            .as_bytes(None)
        )
        self._insert_columns = (
            SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::{}[], %b::bigint[], %b::text[], %b::bytea[]) "
                "RETURNING notification_id"
            )
            .format(self.events, id_type)
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
            except (IntegrityError, ClaimRefusedError) as error:
                # Another writer's events at these versions, an idempotency key used already, or
                # events after the head the batch's state was current at; or, after a lost
                # connection, an unacknowledged attempt's own events.
                if lost is None:
                    raise
                if isinstance(error, ClaimRefusedError) and error.lock_timeout:
                    time.sleep(APPEND_RETRY_WAIT)  # the lost attempt may hold the lock still:
                    continue  # its fate is not known until it ends
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
    def writer_turn(self, after: int | None, *, optimistic: bool = False) -> Iterator[WriterTurn]:
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

        `optimistic` (with `after` known): the caller expects nobody else appended since
        `after` and sends nothing now; its append claims the turn in its own round trip
        (`expected`), and `ClaimRefusedError` says the expectation was wrong.
        """
        turn_cm, turn = self._open_turn(after, optimistic and after is not None)
        with ExitStack() as stack:
            stack.push(turn_cm)
            yield turn

    def _open_turn(
        self, after: int | None, optimistic: bool
    ) -> tuple[AbstractContextManager[WriterTurn], WriterTurn]:
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            turn_cm = self._turn_on(after, optimistic)
            try:
                return turn_cm, turn_cm.__enter__()
            except (InterfaceError, OperationalError):
                if attempt == APPEND_ATTEMPTS:
                    raise
                time.sleep(APPEND_RETRY_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _turn_on(self, after: int | None, optimistic: bool) -> Iterator[WriterTurn]:
        with self._append_connection() as conn:
            if optimistic:
                turn = WriterTurn(conn, [], None, expected=after, confirmed=after)
            else:
                with conn.pipeline():
                    self._send_lock(conn)
                    cursor = cast(Any, conn).cursor(row_factory=tuple_row)
                    if after is None:
                        cursor.execute(self._select_head, prepare=True)
                    else:
                        params = (after, CATCH_UP_LIMIT + 1)
                        cursor.execute(self._select_rows, params, prepare=True, binary=True)
                rows: list[tuple[Any, ...]] = cursor.fetchall()
                if after is None:
                    turn = WriterTurn(conn, None, int(rows[0][0]), confirmed=int(rows[0][0]))
                elif len(rows) <= CATCH_UP_LIMIT:
                    turn = WriterTurn(conn, rows, None, confirmed=int(rows[-1][0]) if rows else after)
                else:
                    turn = WriterTurn(conn, None, None)
            self._turn = turn
            try:
                yield turn
            finally:
                self._turn = None
                turn.alive = False
                self._end_turn(turn)

    def _send_lock(self, conn: psycopg.Connection[DictRow]) -> None:
        """Queues (in the caller's pipeline) the start of a turn: its transaction and the writer lock."""
        conn.execute(b"BEGIN")
        conn.execute(self._turn_timeout)
        conn.execute(b"SELECT pg_advisory_xact_lock(%s, %s)", (WRITER_LOCK, self._writer_scope))

    def _send_claim(self, conn: psycopg.Connection[DictRow], expected: int) -> None:
        """Queues an optimistic turn's claim: the writer lock, then the check that nothing was
        appended after the position its caller expects (an error if something was)."""
        self._send_lock(conn)
        conn.execute(self._expect_head, (expected,), prepare=True)

    @staticmethod
    def _refused(
        conn: psycopg.Connection[DictRow], error: psycopg.Error, refusals: tuple[type[psycopg.Error], ...]
    ) -> ClaimRefusedError | None:
        """What a refused claim becomes (`refusals`: the errors that refuse it), its connection
        closed (the server ends its transaction; nothing was appended); None for any other
        error. Closed rather than rolled back: kept after an aborted pipeline, a later turn on
        it now and then failed with `prepared statement "_pg3_N" does not exist` (psycopg's
        record of the statements it prepared out of step with the server; 3 runs in 8 of the
        two-writer property test, none in 5 since). The claimed append is one statement, not
        a pipeline, and is closed all the same, for one rule: a refusal comes only after a
        quiet spell, and costs a new connection."""
        if not isinstance(error, refusals):
            return None
        conn.close()
        if isinstance(error, psycopg.errors.LockNotAvailable):
            return ClaimRefusedError("the writer lock was not granted in time", lock_timeout=True)
        if isinstance(error, psycopg.errors.UniqueViolation):
            return ClaimRefusedError("another writer appended at this batch's versions or used its keys")
        return ClaimRefusedError("another writer appended since this process's cache was complete")

    def _claim(self, turn: WriterTurn, expected: int) -> None:
        """Claims an optimistic turn in a round trip of its own (before a large batch, which is
        appended on another connection): a real turn from then on. Whatever stops the claim
        stops it before anything of the batch was sent."""
        try:
            with turn.conn.pipeline():
                self._send_claim(turn.conn, expected)
        except psycopg.Error as error:
            turn.alive = False
            if self._refused(turn.conn, error, CLAIM_REFUSED) is None:
                turn.failed = True
            raise ClaimRefusedError("the writer turn could not be claimed") from None
        turn.expected = None

    def _send_append(
        self, conn: psycopg.Connection[DictRow], params: tuple[Any, ...], *, claim: int | None, commit: bool
    ) -> DictRow | None:
        """One round trip: the call of `ledger_append`, with an optimistic turn's claim (if
        `claim`, on a connection outside any transaction: the statement is its own), or with
        the COMMIT that ends a real turn (if `commit`)."""
        if claim is not None:
            assert commit, "a claimed append is its own transaction"
            return conn.execute(self._claimed_append_sql, (*params, claim), prepare=True).fetchone()
        if not commit:
            return conn.execute(self._append_sql, params, prepare=True).fetchone()
        with conn.pipeline():
            cursor = conn.execute(self._append_sql, params, prepare=True)
            conn.execute(b"COMMIT")
        return cursor.fetchone()

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
        """The library's append (one pipelined transaction, on a connection of its own), without
        its own retry; an optimistic turn is claimed first, so the lock is held meanwhile."""
        turn = self._turn
        if turn is not None and turn.alive and turn.expected is not None:
            self._claim(turn, turn.expected)
        positions = library.insert_without_retry(self, stored_events, **kwargs)
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
            [outbox_payload(e) for e in entries] or None,
        )
        turn = self._turn
        if turn is not None and turn.alive:
            # In a writer turn: the append and the commit that ends the turn (an optimistic
            # turn's claim first), in one round trip.
            turn.alive = False
            try:
                row = self._send_append(turn.conn, params, claim=turn.expected, commit=True)
            except psycopg.Error as error:
                claimed = turn.expected is not None
                refused = self._refused(turn.conn, error, CLAIMED_APPEND_REFUSED) if claimed else None
                if refused is not None:
                    raise refused from None
                # Its fate is unknown: closed, the server aborts the turn's transaction unless
                # it committed, so the lookup that follows finds the truth (and no lock is
                # left held by a transaction nobody will end).
                turn.failed = True
                turn.conn.close()
                raise translated(error) from error
        else:
            # Alone, or sent again after its turn lost its connection and with it the lock: the
            # batch claims the lock again, and checks the head its state was current at.
            claim = turn.confirmed if turn is not None else None
            with self._append_connection() as conn:
                try:
                    row = self._send_append(conn, params, claim=claim, commit=claim is not None)
                except psycopg.Error as error:
                    refusals = CLAIMED_APPEND_REFUSED
                    refused = self._refused(conn, error, refusals) if claim is not None else None
                    if refused is not None:
                        raise refused from None
                    raise
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
        except ClaimRefusedError:
            raise  # closed by `_refused`: the next append replaces it
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
