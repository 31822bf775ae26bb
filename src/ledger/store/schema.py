"""The store's tables and statements as data, each written once for both databases.

The events table is the library's; this module declares the tables the ledger adds
next to it (hash links, idempotency records, the chain outbox), the statements that
write them, the triggers that keep the history append-only, and `ledger_append`, the
PostgreSQL function that appends a small batch in one call.

Statements are written with `{}` for the table (qualified by the schema on PostgreSQL)
and `%s` placeholders; `qmark` turns those into SQLite's `?`. A created store's
definitions are digested by `ledger.selfcheck`, so the rendered text must not drift:
`Table.create` renders exactly what earlier versions wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EVENTS_TABLE = "ledger_events"
HASHES_TABLE = "ledger_event_hashes"
IDEMPOTENCY_TABLE = "ledger_idempotency"
OUTBOX_TABLE = "ledger_outbox"
REFUSE_FUNCTION = "ledger_refuse_change"
APPEND_FUNCTION_NAME = "ledger_append"
LOCK_FUNCTION = "ledger_lock_events"  # takes the table lock of appends for the runtime role (selfcheck)

Dialect = Literal["postgres", "sqlite"]

# A column type as each database spells it.
TYPES: dict[str, tuple[str, str]] = {
    "bigint": ("bigint", "INTEGER"),
    "integer": ("integer", "INTEGER"),
    "text": ("text", "TEXT"),
    "bytes": ("bytea", "BLOB"),
    "serial": ("bigserial PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of TYPES
    constraints: str = ""

    def definition(self, dialect: Dialect) -> str:
        spelled = TYPES[self.type][0 if dialect == "postgres" else 1]
        return " ".join(part for part in (self.name, spelled, self.constraints) if part)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def create(self, dialect: Dialect) -> str:
        """`CREATE TABLE IF NOT EXISTS {} (...)`, the table left to be filled in."""
        columns = ", ".join(column.definition(dialect) for column in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {{}} ({columns})"


HASHES = Table(
    HASHES_TABLE,
    (
        Column("position", "bigint", "PRIMARY KEY"),
        Column("prev_position", "bigint", "NOT NULL"),
        Column("hash", "bytes", "NOT NULL"),
    ),
)
IDEMPOTENCY = Table(
    IDEMPOTENCY_TABLE,
    (
        Column("key", "text", "PRIMARY KEY"),
        Column("request_hash", "text", "NOT NULL"),
        Column("response", "text", "NOT NULL"),
        Column("position", "bigint", "NOT NULL"),
    ),
)
OUTBOX = Table(
    OUTBOX_TABLE,
    (
        Column("seq", "serial"),
        Column("position", "bigint", "NOT NULL"),
        Column("asset_id", "text"),
        Column("kind", "text", "NOT NULL"),
        Column("payload", "text", "NOT NULL"),
        Column("state", "text", "NOT NULL"),
        Column("attempts", "integer", "NOT NULL DEFAULT 0"),
        Column("nonce", "bigint"),
        Column("tx_hash", "text"),
        Column("raw_tx", "text"),
        Column("error", "text"),
        Column("block_number", "bigint"),
        Column("targets", "text"),
        Column("done_targets", "text"),
        Column("updated_at", "text"),
    ),
)
OUTBOX_COLUMNS = ", ".join(column.name for column in OUTBOX.columns[1:])  # all but `seq`
OUTBOX_INDEX_NAME = f"{OUTBOX_TABLE}_open"

# ----- statements (`{}`: the table) -----

CREATE_OUTBOX_INDEX = "CREATE INDEX IF NOT EXISTS {} ON {} (state, seq)"  # the index's name, the table
SELECT_LAST_HASH = "SELECT position, hash FROM {} ORDER BY position DESC LIMIT 1"
INSERT_HASH = "INSERT INTO {} (position, prev_position, hash) VALUES (%s, %s, %s)"
INSERT_IDEMPOTENCY = "INSERT INTO {} (key, request_hash, response, position) VALUES (%s, %s, %s, %s)"
INSERT_OUTBOX = "INSERT INTO {} (position, asset_id, kind, payload, state) VALUES (%s, %s, %s, %s, %s)"
MESSAGE_REFUSED = "ledger history is append-only: {operation} on {table} refused"

# PostgreSQL: one function refuses row changes and truncation of the guarded tables.
PG_REFUSE_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION '" + MESSAGE_REFUSED.format(operation="%", table="%") + "', TG_OP, TG_TABLE_NAME "
    "USING ERRCODE = 'insufficient_privilege'; END $$"
)
PG_REFUSE_ROW_TRIGGER = (
    "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
)
PG_REFUSE_TRUNCATE_TRIGGER = (
    "CREATE OR REPLACE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
)


def sqlite_refuse_trigger(table: str, operation: str) -> str:
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{operation.lower()} "
        f"BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, "
        f"'{MESSAGE_REFUSED.format(operation=operation, table=table)}'); END"
    )


def qmark(statement: str) -> str:
    """A statement written with `%s` placeholders, for SQLite."""
    return statement.replace("%s", "?")


# A small batch (a group commit) is appended by one call of this function, in autocommit:
# the statements of the PostgreSQL recorder's pipelined path, with the hash links computed
# by the server exactly as `hashchain.hash_rows` computes them, in one round trip.
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
