"""The few statements the store's readers need (`audit`, `outbox`, `ledger.transparency`),
in the dialect of one database: PostgreSQL through the recorder's pool, SQLite through
its datastore with `%s` placeholders turned into `?` here, in one place."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol
from uuid import UUID

from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from ledger.store import sqlite
from ledger.store.hashchain import StoredRecord
from ledger.store.postgres import LedgerPostgresRecorder
from ledger.store.schema import qmark
from ledger.store.sqlite import LedgerSQLiteRecorder


class Sql(Protocol):
    """The few statements `StoreAdmin` needs, in the dialect of one database."""

    @property
    def recorder(self) -> LedgerPostgresRecorder | LedgerSQLiteRecorder: ...

    def fetch(self, sql: str, params: Sequence[Any]) -> list[Any]: ...

    def bulk_load(self, records: Iterator[list[StoredRecord]]) -> None: ...

    def execute(self, sql: str, params: Sequence[Any]) -> None: ...

    def advisory_lock(self, key: int) -> AbstractContextManager[bool]: ...

    def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None: ...


class PostgresSql:
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


class SQLiteSql:
    def __init__(self, recorder: LedgerSQLiteRecorder) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore

    def fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        sql = qmark(sql)
        params = [p.hex if isinstance(p, UUID) else p for p in params]
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return list(c.fetchall())

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(qmark(sql), list(params))

    def write(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        with self.datastore.transaction(commit=True) as c:
            for sql, rows in statements:
                if rows:
                    c.executemany(qmark(sql), rows)

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
                c.executemany(sqlite.INSERT_HASH, [(x.position, x.prev_position, x.hash) for x in batch])
