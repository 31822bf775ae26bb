"""The store's self-check: the history's tables, triggers and append function are present and
unchanged, and the role the service runs as cannot drop or alter them.

When a process creates or hardens the store it writes a digest of their definitions
(columns, trigger definitions and states, function definitions, as the database's
catalog shows them) into `ledger_store_digest`; `serve`, `project`, `worker` and
`verify` recompute it and compare. On PostgreSQL the runtime role cannot write that
table, so it cannot make a changed definition look right; the owner role can, which
is what signed tree heads are for (SPEC 4.7).

A store whose history tables were dropped is never silently created afresh: the
digest table (PostgreSQL) or a mark in the file's header (SQLite `user_version`)
remembers that the store existed. On SQLite this guards against mistakes only:
whoever can write the file can rewrite all of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from psycopg.sql import SQL, Identifier

from ledger.errors import ConfigurationError
from ledger.store import (
    CREATE_LOCK,
    EVENTS_TABLE,
    HASHES_TABLE,
    IDEMPOTENCY_TABLE,
    LOCK_FUNCTION,
    OUTBOX_TABLE,
    LedgerPostgresRecorder,
    LedgerSQLiteRecorder,
)

DIGEST_TABLE = "ledger_store_digest"
FUNCTIONS = ("ledger_append", "ledger_refuse_change", LOCK_FUNCTION)
HISTORY = (EVENTS_TABLE, HASHES_TABLE, IDEMPOTENCY_TABLE)  # SELECT and INSERT only, for the runtime role
TABLES = (*HISTORY, OUTBOX_TABLE)
GUARDED = (EVENTS_TABLE, HASHES_TABLE)  # the tables whose triggers refuse changes
SQLITE_MARK = 0x4C454447  # `PRAGMA user_version` of a file that holds a ledger store ("LEDG")

Recorder = LedgerPostgresRecorder | LedgerSQLiteRecorder


@dataclass(frozen=True)
class Check:
    """One finding of the self-check. A failed check that is not `enforced` is reported only."""

    name: str
    ok: bool
    detail: str
    enforced: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_triggers(postgres: bool) -> list[str]:
    kinds = ("refuse_row_change", "refuse_truncate") if postgres else ("refuse_update", "refuse_delete")
    return [f"{table}_{kind}" for table in GUARDED for kind in kinds]


# ----- PostgreSQL -----


Rows = list[tuple[Any, ...]]


def _pg_fetch(recorder: LedgerPostgresRecorder, sql: str, params: Sequence[Any] = ()) -> Rows:
    """Rows as tuples (the columns of a query need distinct names: rows come as dicts)."""
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(sql.encode(), params)
        return [tuple(row.values()) for row in curs.fetchall()]


PG_COLUMNS = """
SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2
"""
PG_TRIGGERS = """
SELECT c.relname, t.tgname, t.tgenabled::text, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = ANY(%s) AND NOT t.tgisinternal ORDER BY 1, 2
"""
PG_FUNCTIONS = """
SELECT p.proname, pg_get_functiondef(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %s AND p.proname = ANY(%s) ORDER BY 1, 2
"""


def _pg_catalog(recorder: LedgerPostgresRecorder) -> tuple[list[tuple[Any, ...]], ...]:
    schema = recorder.datastore.schema
    return (
        _pg_fetch(recorder, PG_COLUMNS, (schema, list(TABLES))),
        _pg_fetch(recorder, PG_TRIGGERS, (schema, list(TABLES))),
        _pg_fetch(recorder, PG_FUNCTIONS, (schema, list(FUNCTIONS))),
    )


def _pg_present(recorder: LedgerPostgresRecorder, name: str) -> bool:
    qualified = f'"{recorder.datastore.schema}".{name}'
    return bool(_pg_fetch(recorder, "SELECT to_regclass(%s) IS NOT NULL", (qualified,))[0][0])


def function_signatures(curs: Any, schema: str, pattern: str) -> list[str]:
    """`schema.name(argument types)` of the functions whose name is LIKE `pattern`, quoted
    as SQL needs them (a function is altered or granted by its full signature)."""
    curs.execute(
        "SELECT p.oid::regprocedure::text AS signature FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname LIKE %s",
        (schema, pattern),
    )
    return [str(row["signature"]) for row in curs.fetchall()]


def _pg_harden(recorder: LedgerPostgresRecorder) -> None:
    """The owner's part of the hardening: the digest table, the lock function, and
    `ledger_append` running as its owner (LOCK ... IN EXCLUSIVE MODE takes UPDATE, DELETE
    or TRUNCATE privilege, which the runtime role does not have)."""
    schema = Identifier(recorder.datastore.schema)
    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL("CREATE TABLE IF NOT EXISTS {}.{} (name text PRIMARY KEY, digest text NOT NULL)").format(
                schema, Identifier(DIGEST_TABLE)
            )
        )
        curs.execute(
            SQL(
                "CREATE OR REPLACE FUNCTION {}.{}() RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
                "SET search_path = pg_catalog, pg_temp AS $$ BEGIN "
                "LOCK TABLE {}.{} IN EXCLUSIVE MODE; END $$"
            ).format(schema, Identifier(LOCK_FUNCTION), schema, Identifier(recorder.events_table_name))
        )
        for signature in function_signatures(curs, recorder.datastore.schema, "ledger_append"):
            curs.execute(
                SQL("ALTER FUNCTION " + signature + " SECURITY DEFINER SET search_path = pg_catalog, pg_temp")
            )


# ----- SQLite -----


def _sqlite_fetch(recorder: LedgerSQLiteRecorder, sql: str, params: Sequence[Any] = ()) -> Rows:
    with recorder.datastore.transaction(commit=False) as c:
        c.execute(sql, list(params))
        return [tuple(row) for row in c.fetchall()]


def _sqlite_catalog(recorder: LedgerSQLiteRecorder) -> tuple[list[tuple[Any, ...]], ...]:
    marks = ", ".join("?" * len(TABLES))
    return (
        _sqlite_fetch(
            recorder,
            f"SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name IN ({marks}) "
            "ORDER BY type, name",
            TABLES,
        ),
    )


def _sqlite_present(recorder: LedgerSQLiteRecorder, name: str) -> bool:
    rows = _sqlite_fetch(recorder, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return bool(rows)


# ----- both -----


def catalog_digest(recorder: Recorder) -> str:
    """sha256 over the definitions of the history's tables, triggers and functions."""
    postgres = isinstance(recorder, LedgerPostgresRecorder)
    parts = _pg_catalog(recorder) if postgres else _sqlite_catalog(recorder)  # type: ignore[arg-type]
    text = "\n".join("\t".join(str(value) for value in row) for part in parts for row in part)
    return hashlib.sha256(text.encode()).hexdigest()


def missing_tables(recorder: Recorder) -> list[str]:
    if isinstance(recorder, LedgerPostgresRecorder):
        return [name for name in TABLES if not _pg_present(recorder, name)]
    return [name for name in TABLES if not _sqlite_present(recorder, name)]


def _existed(recorder: Recorder) -> bool:
    """Whether this store was created before (so that missing tables were dropped)."""
    if isinstance(recorder, LedgerPostgresRecorder):
        return _pg_present(recorder, DIGEST_TABLE)
    return bool(_sqlite_fetch(recorder, "PRAGMA user_version")[0][0] == SQLITE_MARK)


def before_creating(recorder: Recorder) -> None:
    """Refuses to create afresh a history that was dropped: it would verify as empty."""
    missing = missing_tables(recorder)
    if missing and (len(missing) < len(TABLES) or _existed(recorder)):
        raise ConfigurationError(
            f"the store's history tables {', '.join(missing)} are missing: they were dropped outside "
            "the ledger. Restore the database from a backup (or `ledger import` an export into a "
            "new store); the ledger does not create them afresh"
        )


def after_creating(recorder: Recorder) -> None:
    """The creating process's hardening; the digest of the definitions if none is stored yet
    (`ledger init` stores it anew: `record_digest`)."""
    if isinstance(recorder, LedgerPostgresRecorder):
        _pg_harden(recorder)
    elif not (_existed(recorder) and _sqlite_present(recorder, DIGEST_TABLE)):
        # Written once, by the first process: a write at every start would make processes
        # opening one SQLite file at once fail with "database is locked".
        with recorder.datastore.transaction(commit=True) as c:
            c.execute(f"CREATE TABLE IF NOT EXISTS {DIGEST_TABLE} (name TEXT PRIMARY KEY, digest TEXT)")
            c.execute(f"PRAGMA user_version = {SQLITE_MARK}")
    if _stored_digest(recorder) is None:
        record_digest(recorder)


def record_digest(recorder: Recorder) -> None:
    """Stores the digest of the definitions as they are now: the owner vouches for them.
    (PostgreSQL's hardening has just replaced the triggers and functions with the ledger's;
    SQLite's creates them only if absent, so they are made anew here.)"""
    if isinstance(recorder, LedgerSQLiteRecorder):
        with recorder.datastore.transaction(commit=True) as c:
            for name in expected_triggers(postgres=False):
                c.execute(f"DROP TRIGGER IF EXISTS {name}")
            for statement in recorder.create_table_statements:
                if statement.startswith("CREATE TRIGGER"):
                    c.execute(statement)
    digest = catalog_digest(recorder)
    if isinstance(recorder, LedgerPostgresRecorder):
        table = f'"{recorder.datastore.schema}".{DIGEST_TABLE}'
        upsert = (
            f"INSERT INTO {table} (name, digest) VALUES ('history', %s) "
            "ON CONFLICT (name) DO UPDATE SET digest = excluded.digest"
        )
        with recorder.datastore.transaction(commit=True) as curs:
            curs.execute(upsert.encode(), (digest,))
        return
    with recorder.datastore.transaction(commit=True) as c:
        c.execute(f"INSERT OR REPLACE INTO {DIGEST_TABLE} (name, digest) VALUES ('history', ?)", [digest])


def _stored_digest(recorder: Recorder) -> str | None:
    if isinstance(recorder, LedgerPostgresRecorder):
        if not _pg_present(recorder, DIGEST_TABLE):
            return None
        table = f'"{recorder.datastore.schema}".{DIGEST_TABLE}'
        rows = _pg_fetch(recorder, f"SELECT digest FROM {table} WHERE name = 'history'")
    else:
        if not _sqlite_present(recorder, DIGEST_TABLE):
            return None
        rows = _sqlite_fetch(recorder, f"SELECT digest FROM {DIGEST_TABLE} WHERE name = 'history'")
    return str(rows[0][0]) if rows else None


def _present_triggers(recorder: Recorder) -> dict[str, str]:
    """Trigger name -> state ('O' enabled, 'D' disabled, ...; SQLite triggers are always on)."""
    if isinstance(recorder, LedgerPostgresRecorder):
        rows = _pg_fetch(recorder, PG_TRIGGERS, (recorder.datastore.schema, list(GUARDED)))
        return {str(row[1]): str(row[2]) for row in rows}
    rows = _sqlite_fetch(recorder, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return {str(row[0]): "O" for row in rows}


def _present_functions(recorder: LedgerPostgresRecorder) -> set[str]:
    rows = _pg_fetch(recorder, PG_FUNCTIONS, (recorder.datastore.schema, list(FUNCTIONS)))
    return {str(row[0]) for row in rows}


def structure_checks(recorder: Recorder) -> list[Check]:
    """Tables, triggers and functions present, and their definitions as digested at creation.

    Read while no process creates or hardens the store (PostgreSQL): a process starting at the
    same moment replaces the functions and then hardens them in two transactions, and a check
    that read the definitions in between would refuse a store that is as created."""
    with _no_store_being_created(recorder):
        return _structure_checks(recorder)


@contextmanager
def _no_store_being_created(recorder: Recorder) -> Iterator[None]:
    """Holds the store-creation advisory lock shared (`create_table` takes it exclusively)."""
    if not isinstance(recorder, LedgerPostgresRecorder):
        yield
        return
    with recorder.datastore.get_connection() as conn:
        conn.execute("SELECT pg_advisory_lock_shared(%s)", (CREATE_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", (CREATE_LOCK,))


def _structure_checks(recorder: Recorder) -> list[Check]:
    postgres = isinstance(recorder, LedgerPostgresRecorder)
    missing = missing_tables(recorder)
    checks = [Check("tables", not missing, f"missing: {', '.join(missing)}" if missing else "present")]
    if missing:
        return checks
    triggers = _present_triggers(recorder)
    absent = [name for name in expected_triggers(postgres) if name not in triggers]
    disabled = [name for name in expected_triggers(postgres) if triggers.get(name, "O") != "O"]
    problems = [f"missing: {', '.join(absent)}"] * bool(absent) + [f"disabled: {', '.join(disabled)}"] * bool(
        disabled
    )
    checks.append(Check("triggers", not problems, "; ".join(problems) or "present and enabled"))
    if postgres:
        assert isinstance(recorder, LedgerPostgresRecorder)
        lacking = sorted(set(FUNCTIONS) - _present_functions(recorder))
        detail = f"missing: {', '.join(lacking)}" if lacking else "present"
        checks.append(Check("functions", not lacking, detail))
    stored = _stored_digest(recorder)
    if stored is None:
        checks.append(Check("digest", False, "no stored digest: run `ledger init`"))
    else:
        same = stored == catalog_digest(recorder)
        detail = "definitions as created" if same else (
            "definitions changed since the store was created or last hardened by `ledger init`"
        )
        checks.append(Check("digest", same, detail))
    return checks


def privilege_checks(recorder: Recorder, enforced: bool) -> list[Check]:
    """Whether the role this process runs as can drop, alter or rewrite the history."""
    if not isinstance(recorder, LedgerPostgresRecorder):
        return [Check("privileges", True, "embedded SQLite store: protects against mistakes, not against "
                      "whoever can write its file", enforced=False)]
    schema = recorder.datastore.schema
    found: list[str] = []
    if _pg_fetch(recorder, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
        found.append("it is a superuser")
    if _pg_fetch(
        recorder,
        "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = %s",
        (schema,),
    )[0][0]:
        found.append(f"it owns schema {schema}")
    for table in HISTORY:
        row = _pg_fetch(
            recorder,
            "SELECT pg_has_role(current_user, relowner, 'USAGE') AS owns, "
            "has_table_privilege(oid, 'UPDATE') AS u, has_table_privilege(oid, 'DELETE') AS d, "
            "has_table_privilege(oid, 'TRUNCATE') AS t, has_table_privilege(oid, 'TRIGGER') AS g "
            "FROM pg_class WHERE oid = to_regclass(%s)",
            (f'"{schema}".{table}',),
        )
        if not row:
            continue
        owns, *rights = row[0]
        if owns:
            found.append(f"it owns {table}")
        kinds = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
        granted = [name for name, held in zip(kinds, rights, strict=True) if held]
        if granted and not owns:
            found.append(f"it holds {', '.join(granted)} on {table}")
    owned = _pg_fetch(
        recorder,
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND p.proname = ANY(%s) AND pg_has_role(current_user, p.proowner, 'USAGE')",
        (schema, list(FUNCTIONS)),
    )
    found += [f"it owns function {row[0]}" for row in owned]
    detail = (
        "the runtime role can DROP or ALTER the history: " + "; ".join(found)
        if found
        else "the runtime role can only read and append the history"
    )
    return [Check("privileges", not found, detail, enforced=enforced)]


def store_checks(recorder: Recorder, two_roles: bool) -> list[Check]:
    """Every check; the privilege check refuses a start only when two roles are configured."""
    checks = structure_checks(recorder)
    if all(check.ok for check in checks):
        checks += privilege_checks(recorder, enforced=two_roles)
    return checks


def refusal(checks: Sequence[Check]) -> str | None:
    """Why a process must not start, or None."""
    failed = [check for check in checks if check.enforced and not check.ok]
    if not failed:
        return None
    return "store self-check failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
