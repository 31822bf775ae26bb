"""The event store: the library's recorders, hardened for a register of record.

On top of `eventsourcing`'s PostgreSQL and SQLite application recorders this adds,
inside the very transaction that appends the events:

- a hash chain: `hash_n = sha256(hash_{n-1} || canonical record n)`, one row per
  event in `ledger_event_hashes`, linked to the previous position;
- idempotency records: the first result of a command sent with an idempotency key;
- the chain outbox: operations owed to a bound token (`ledger.outbox`);
- triggers that refuse UPDATE, DELETE and TRUNCATE of the history.

One module per concern: `hashchain` (the canonical record and the chain hash, defined
once), `schema` (tables and statements as data), `rows` (what an append writes besides
the events), `postgres` and `sqlite` (the recorders), `dialect` (the statements readers
need, per database), `audit` (`StoreAdmin`: verify, export, import, versions at a
position) and `outbox` (the outbox's rows). The names are re-exported here.
"""

from __future__ import annotations

from ledger.store.audit import (
    BATCH,
    StoreAdmin,
    Verification,
    parse_lines,
    record_to_json,
    verify_records,
)
from ledger.store.dialect import PostgresSql, SQLiteSql
from ledger.store.hashchain import GENESIS, StoredRecord, canonical_record, chain_hash, hash_rows, link
from ledger.store.outbox import OUTBOX_FIELDS, OUTBOX_LOCK, OutboxRow, OutboxStore
from ledger.store.postgres import (
    APPEND_ATTEMPTS,
    APPEND_CONNECTION_WAIT,
    APPEND_RETRY_WAIT,
    CATCH_UP_LIMIT,
    CREATE_LOCK,
    TRANSLATED_ERRORS,
    UNNEST_FROM,
    WRITER_LOCK,
    ClaimRefusedError,
    LedgerPostgresRecorder,
    WriterTurn,
    translated,
)
from ledger.store.rows import IdempotencyRecord, idempotency_rows, outbox_rows
from ledger.store.schema import (
    APPEND_FUNCTION,
    EVENTS_TABLE,
    HASHES_TABLE,
    IDEMPOTENCY_TABLE,
    INSERT_OUTBOX,
    LOCK_FUNCTION,
    OUTBOX_COLUMNS,
    OUTBOX_TABLE,
)
from ledger.store.sqlite import LedgerSQLiteRecorder

_PostgresSql = PostgresSql  # its name before the store became a package

__all__ = [
    "APPEND_ATTEMPTS",
    "APPEND_CONNECTION_WAIT",
    "APPEND_FUNCTION",
    "APPEND_RETRY_WAIT",
    "BATCH",
    "CATCH_UP_LIMIT",
    "CREATE_LOCK",
    "EVENTS_TABLE",
    "GENESIS",
    "HASHES_TABLE",
    "IDEMPOTENCY_TABLE",
    "INSERT_OUTBOX",
    "LOCK_FUNCTION",
    "OUTBOX_COLUMNS",
    "OUTBOX_FIELDS",
    "OUTBOX_LOCK",
    "OUTBOX_TABLE",
    "TRANSLATED_ERRORS",
    "UNNEST_FROM",
    "WRITER_LOCK",
    "ClaimRefusedError",
    "IdempotencyRecord",
    "LedgerPostgresRecorder",
    "LedgerSQLiteRecorder",
    "OutboxRow",
    "OutboxStore",
    "PostgresSql",
    "SQLiteSql",
    "StoreAdmin",
    "StoredRecord",
    "Verification",
    "WriterTurn",
    "_PostgresSql",
    "canonical_record",
    "chain_hash",
    "hash_rows",
    "idempotency_rows",
    "link",
    "outbox_rows",
    "parse_lines",
    "record_to_json",
    "translated",
    "verify_records",
]
