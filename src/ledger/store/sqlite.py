"""The SQLite recorder for the embedded store: the library's, writing the same hash links,
idempotency records and outbox entries as the PostgreSQL recorder in the transaction of
each append. The library's writer lock serialises appends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from ledger.store import schema
from ledger.store.hashchain import GENESIS, hash_rows
from ledger.store.rows import idempotency_rows, outbox_rows
from ledger.store.schema import (
    EVENTS_TABLE,
    HASHES,
    HASHES_TABLE,
    IDEMPOTENCY,
    IDEMPOTENCY_TABLE,
    OUTBOX,
    OUTBOX_INDEX_NAME,
    OUTBOX_TABLE,
    qmark,
)

SELECT_LAST_HASH = schema.SELECT_LAST_HASH.format(HASHES_TABLE)
INSERT_HASH = qmark(schema.INSERT_HASH.format(HASHES_TABLE))
INSERT_IDEMPOTENCY = qmark(schema.INSERT_IDEMPOTENCY.format(IDEMPOTENCY_TABLE))
INSERT_OUTBOX = qmark(schema.INSERT_OUTBOX.format(OUTBOX_TABLE))


class LedgerSQLiteRecorder(SQLiteApplicationRecorder):
    """SQLite recorder for the embedded store; the library's writer lock serialises appends."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = EVENTS_TABLE) -> None:
        super().__init__(datastore, events_table_name)

    def create_table(self) -> None:
        from ledger import selfcheck  # it reads this package's recorders

        selfcheck.before_creating(self)
        super().create_table()
        selfcheck.after_creating(self)

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements += [
            HASHES.create("sqlite").format(HASHES_TABLE),
            IDEMPOTENCY.create("sqlite").format(IDEMPOTENCY_TABLE),
            OUTBOX.create("sqlite").format(OUTBOX_TABLE),
            schema.CREATE_OUTBOX_INDEX.format(OUTBOX_INDEX_NAME, OUTBOX_TABLE),
        ]
        for table in (self.events_table_name, HASHES_TABLE):  # the history: append-only
            for operation in ("UPDATE", "DELETE"):
                statements.append(schema.sqlite_refuse_trigger(table, operation))
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        assert positions is not None
        c.execute(SELECT_LAST_HASH)
        last = c.fetchone()
        prev_position, prev_hash = (last["position"], bytes(last["hash"])) if last else (0, GENESIS)
        c.executemany(INSERT_HASH, hash_rows(stored_events, positions, prev_position, prev_hash))
        records = kwargs.get("idempotency") or ()
        if records:
            c.executemany(INSERT_IDEMPOTENCY, idempotency_rows(records, positions))
        entries = kwargs.get("outbox") or ()
        if entries:
            c.executemany(INSERT_OUTBOX, outbox_rows(entries, positions))
        commit_info = kwargs.get("commit_info")
        if commit_info is not None:
            commit_info["prev_position"] = prev_position
        return positions
