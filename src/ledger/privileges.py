"""Two roles on PostgreSQL: the owner creates and migrates; the runtime role reads and appends.

`ledger init`, run with `LEDGER_ADMIN_DATABASE_URL` (the owner), grants the role of
`LEDGER_DATABASE_URL` (the runtime role) only what the service does:

- the history (`ledger_events`, `ledger_event_hashes`, `ledger_idempotency`): SELECT and
  INSERT. No UPDATE, DELETE, TRUNCATE, TRIGGER, no ownership, so no DROP or ALTER.
  Appends take the table lock through the owner's `ledger_lock_events` and
  `ledger_append` (SECURITY DEFINER), as LOCK ... IN EXCLUSIVE MODE needs more than INSERT;
- the chain outbox: SELECT, INSERT and UPDATE (the worker advances a row's state);
- every other table of the schema: the read models the runner writes, API keys, and
  derived data (aggregate snapshots, the Merkle tree and its signed heads, which matter
  as the copies auditors keep): SELECT, INSERT, UPDATE, DELETE
  (`alembic_version` and the self-check's digest: SELECT);
- USAGE of the schema and its sequences, EXECUTE of the ledger's functions (`ledger_*`:
  `ledger_append`, `ledger_lock_events`); EXECUTE of every function of the schema is
  taken from PUBLIC (the library's `es_insert_events` appends without hash links).
  Never CREATE on the schema.

Grants name the tables present when they run: `ledger replay` (which swaps in tables it
built) runs them again.
"""

from __future__ import annotations

from psycopg.sql import SQL, Composable, Composed, Identifier

from ledger.selfcheck import DIGEST_TABLE, HISTORY, function_signatures
from ledger.store import OUTBOX_TABLE, LedgerPostgresRecorder

READ_ONLY = ("alembic_version", DIGEST_TABLE)


def grant_statements(schema: str, role: str) -> list[Composed]:
    s, r = Identifier(schema), Identifier(role)

    def tables(names: tuple[str, ...]) -> Composable:
        return SQL(", ").join(SQL("{}.{}").format(s, Identifier(name)) for name in names)

    history = tables(HISTORY)
    return [
        SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(s, r),
        SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, r),
        SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(s, r),
        SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {} FROM PUBLIC, {}").format(s, r),
        SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
        SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(s, r),
        SQL("REVOKE UPDATE, DELETE ON {} FROM {}").format(history, r),
        SQL("REVOKE DELETE ON {} FROM {}").format(tables((OUTBOX_TABLE,)), r),
        SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, r),
    ]


def _read_only(schema: str, role: str, present: set[str]) -> list[Composed]:
    s, r = Identifier(schema), Identifier(role)
    return [
        SQL("REVOKE INSERT, UPDATE, DELETE ON {}.{} FROM {}").format(s, Identifier(name), r)
        for name in READ_ONLY
        if name in present
    ]


def grant_runtime_role(owner: LedgerPostgresRecorder, role: str) -> None:
    """Grants `role` what the service needs in the owner's store schema, and nothing else."""
    schema = owner.datastore.schema
    with owner.datastore.transaction(commit=True) as curs:
        curs.execute("SELECT current_user AS me")
        row = curs.fetchone()
        if row is not None and row["me"] == role:
            return  # one role for both: nothing to grant (the self-check reports it)
        curs.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        present = {str(r["tablename"]) for r in curs.fetchall()}
        for statement in [*grant_statements(schema, role), *_read_only(schema, role, present)]:
            curs.execute(statement)
        # EXECUTE of the ledger's own functions only (not of the library's es_insert_events).
        for signature in function_signatures(curs, schema, r"ledger\_%"):
            curs.execute(SQL("GRANT EXECUTE ON FUNCTION " + signature + " TO {}").format(Identifier(role)))
