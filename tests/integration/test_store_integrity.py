"""Tamper evidence: the history is append-only in the database, and the hash chain names any change."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import IntegrityViolationError, ValidationError
from ledger.outbox import OutboxEntry
from ledger.store import EVENTS_TABLE, HASHES_TABLE, IdempotencyRecord, OutboxStore
from tests.conftest import PG_URL
from tests.support import holding, onboard, open_asset


def scenario(app: LedgerApplication) -> None:
    asset_id = open_asset(app)
    onboard(app, "alice")
    onboard(app, "bob")
    holding(app, asset_id, "alice", 50)
    app.transfer(asset_id, "alice", "bob", 20)
    app.freeze_tokens(asset_id, "bob", 5)


class RawStore:
    """Direct SQL on the store, as a database superuser (or someone with the file) could do."""

    def __init__(self, store_url: str) -> None:
        self.env = store_env(store_url)
        self.postgres = self.env["PERSISTENCE_MODULE"].endswith("postgres")

    def table(self, name: str) -> str:
        return f'"{self.env["POSTGRES_SCHEMA"]}".{name}' if self.postgres else name

    @property
    def position(self) -> str:
        return "notification_id" if self.postgres else "rowid"

    def execute(self, sql: str, params: tuple[Any, ...] = (), *, bypass_triggers: bool = False) -> None:
        if self.postgres:
            env = self.env
            with psycopg.connect(
                host=env["POSTGRES_HOST"],
                port=env["POSTGRES_PORT"],
                dbname=env["POSTGRES_DBNAME"],
                user=env["POSTGRES_USER"],
                autocommit=False,
            ) as conn:
                if bypass_triggers:
                    conn.execute("SET session_replication_role = replica")
                conn.execute(sql.replace("?", "%s").encode(), params)
                conn.commit()
        else:
            conn = sqlite3.connect(self.env["SQLITE_DBNAME"])
            try:
                if bypass_triggers:
                    for (name,) in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                    ).fetchall():
                        conn.execute(f"DROP TRIGGER {name}")
                conn.execute(sql, params)
                conn.commit()
            finally:
                conn.close()


@pytest.fixture
def raw(store_url: str) -> RawStore:
    return RawStore(store_url)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {events} SET topic = 'x'",
        "DELETE FROM {events}",
        "UPDATE {hashes} SET prev_position = 0",
        "DELETE FROM {hashes}",
    ],
)
def test_changing_stored_history_is_refused_by_the_database(
    app: LedgerApplication, raw: RawStore, statement: str
) -> None:
    scenario(app)
    before = app.admin.verify()
    sql = statement.format(events=raw.table(EVENTS_TABLE), hashes=raw.table(HASHES_TABLE))
    with pytest.raises((psycopg.Error, sqlite3.Error), match="append-only"):
        raw.execute(sql)
    assert app.admin.verify() == before


@pytest.mark.postgres
def test_truncating_the_history_is_refused_on_postgres(pg_schema_url: str) -> None:
    app = LedgerApplication(store_env(pg_schema_url))
    scenario(app)
    raw = RawStore(pg_schema_url)
    for table in (EVENTS_TABLE, HASHES_TABLE):
        with pytest.raises(psycopg.Error, match="append-only"):
            raw.execute(f"TRUNCATE {raw.table(table)}")
    assert app.admin.verify().ok
    app.close()


def test_an_altered_event_is_named_by_verify(app: LedgerApplication, raw: RawStore) -> None:
    scenario(app)
    target = 9
    raw.execute(
        f"UPDATE {raw.table(EVENTS_TABLE)} SET state = ? WHERE {raw.position} = ?",
        (b'{"quantity":999999}', target),
        bypass_triggers=True,
    )
    result = app.admin.verify()
    assert not result.ok
    assert result.first_invalid_position == target
    assert result.events_checked == target - 1


def test_a_removed_event_is_named_by_verify(app: LedgerApplication, raw: RawStore) -> None:
    scenario(app)
    raw.execute(f"DELETE FROM {raw.table(EVENTS_TABLE)} WHERE {raw.position} = 7", bypass_triggers=True)
    raw.execute(f"DELETE FROM {raw.table(HASHES_TABLE)} WHERE position = 7", bypass_triggers=True)
    result = app.admin.verify()
    assert (result.ok, result.first_invalid_position) == (False, 7)
    assert "removed" in str(result.reason)


def test_a_removed_event_whose_hash_stayed_is_named_by_verify(app: LedgerApplication, raw: RawStore) -> None:
    scenario(app)
    raw.execute(f"DELETE FROM {raw.table(EVENTS_TABLE)} WHERE {raw.position} = 4", bypass_triggers=True)
    result = app.admin.verify()
    assert (result.ok, result.first_invalid_position) == (False, 4)


def test_an_event_inserted_outside_the_ledger_is_named_by_verify(
    app: LedgerApplication, raw: RawStore
) -> None:
    scenario(app)
    head = app.admin.head_position()
    stream = "00000000-0000-0000-0000-000000000001" if raw.postgres else "00000000000000000000000000000001"
    raw.execute(
        f"INSERT INTO {raw.table(EVENTS_TABLE)} "
        f"({raw.position}, originator_id, originator_version, topic, state) "
        "VALUES (?, ?, 1, 'forged', ?)",
        (head + 1, stream, b"{}"),
    )
    result = app.admin.verify()
    assert (result.ok, result.first_invalid_position) == (False, head + 1)
    assert "inserted" in str(result.reason)


def test_export_then_import_into_an_empty_store_yields_the_same_head_hash(
    app: LedgerApplication, tmp_path: Path, store_url: str
) -> None:
    scenario(app)
    exported = tmp_path / "history.jsonl"
    with exported.open("w") as out:
        original = app.admin.export(out)
    assert original.ok
    target = LedgerApplication(store_env(f"sqlite:///{tmp_path}/copy.sqlite3"))
    with exported.open() as first, exported.open() as second:
        imported = target.admin.import_(first, second)
    assert imported.head_hash == original.head_hash
    assert target.admin.verify() == original
    assert target.get_asset("TOLL-JKT-01").balances == app.get_asset("TOLL-JKT-01").balances
    target.close()


def test_import_refuses_a_file_whose_chain_does_not_verify(app: LedgerApplication, tmp_path: Path) -> None:
    scenario(app)
    exported = tmp_path / "history.jsonl"
    with exported.open("w") as out:
        app.admin.export(out)
    lines = exported.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "quantity" in line and "alice" in line)
    record = json.loads(lines[index])
    record["state"] = record["state"].replace("alice", "mallory")
    lines[index] = json.dumps(record)
    exported.write_text("\n".join(lines) + "\n")
    target = LedgerApplication(store_env(f"sqlite:///{tmp_path}/copy.sqlite3"))
    refused = f"position {record['position']}"
    with (
        exported.open() as first,
        exported.open() as second,
        pytest.raises(IntegrityViolationError, match=refused),
    ):
        target.admin.import_(first, second)
    assert target.admin.head_position() == 0
    target.close()


def test_import_refuses_a_store_that_is_not_empty(app: LedgerApplication, tmp_path: Path) -> None:
    scenario(app)
    exported = tmp_path / "history.jsonl"
    with exported.open("w") as out:
        app.admin.export(out)
    head = app.admin.head_position()
    with (
        exported.open() as first,
        exported.open() as second,
        pytest.raises(ValidationError, match="not empty"),
    ):
        app.admin.import_(first, second)
    assert app.admin.head_position() == head


@pytest.mark.postgres
@pytest.mark.parametrize("sizes", [(1, 2, 63), (64, 1, 200, 5)], ids=["small", "mixed"])
def test_both_postgres_write_paths_link_the_chain_as_verify_recomputes_it(
    pg_schema_url: str, sizes: tuple[int, ...]
) -> None:
    """A batch below `UNNEST_FROM` is appended by the server-side `ledger_append` (links hashed
    by PostgreSQL), a larger one by the pipelined path (links hashed here): either way the
    chain verifies, and idempotency records and outbox entries land on their events."""
    app = LedgerApplication(store_env(pg_schema_url))
    try:
        recorder = app.recorder
        head = app.admin.head_position()
        for n, size in enumerate(sizes):
            events = [
                StoredEvent(uuid4(), 1, "tests:Raw", json.dumps({"batch": n, "i": i, "é": "ü"}).encode())
                for i in range(size)
            ]
            key = IdempotencyRecord(f"key-{n}", "hash", '{"ok": true}', size - 1)
            entry = OutboxEntry(0, f"ASSET-{n}", "mint", {"n": n})
            info: dict[str, Any] = {}
            positions = recorder.insert_events(events, idempotency=[key], outbox=[entry], commit_info=info)
            assert positions is not None and len(positions) == size
            assert info["prev_position"] == head
            assert list(positions) == sorted(positions) and positions[0] > head
            head = positions[-1]
            assert app.admin.idempotency_records([f"key-{n}"])[f"key-{n}"][2] == positions[-1]
            assert [
                row.position for row in OutboxStore(app.admin).open_rows() if row.asset_id == entry.asset_id
            ] == [positions[0]]
        verification = app.admin.verify()
        assert verification.ok, verification
        assert verification.events_checked == sum(sizes) and verification.head_position == head
    finally:
        app.close()


@pytest.mark.postgres
def test_the_append_connection_is_kept_and_replaced_when_its_server_process_dies(pg_schema_url: str) -> None:
    """Small batches go on one connection set aside for appends. Its server process killed,
    the next append fails over to a fresh one (the recorder's bounded retry), and nothing
    is lost or doubled; a conflicting append is refused with the library's own error."""
    from eventsourcing.persistence import IntegrityError

    app = LedgerApplication(store_env(pg_schema_url))
    try:
        scenario(app)
        recorder = app.recorder
        first = recorder._append_conn
        assert first is not None
        onboard(app, "dave")
        assert recorder._append_conn is first  # the same connection, append after append
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first.info.backend_pid,))
        head = app.admin.head_position()
        onboard(app, "erin")
        assert recorder._append_conn is not first and not recorder._append_conn.closed
        assert app.admin.head_position() > head
        event = StoredEvent(uuid4(), 1, "tests:Raw", b"{}")
        recorder.insert_events([event])
        with pytest.raises(IntegrityError):
            recorder.insert_events([event])  # same stream, same version
        assert app.admin.verify().ok
        assert app.get_investor("dave").kyc_status == app.get_investor("erin").kyc_status == "approved"
    finally:
        app.close()
    assert recorder._append_conn is None
