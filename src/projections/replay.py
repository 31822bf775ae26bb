"""Rebuilds every read model from the event store into fresh tables, then swaps them in.

The live tables keep serving queries while the copies are built; the swap
(drop old, rename new, rename their keys and indexes) is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, Index, Table, inspect, text

from ledger.application import LedgerApplication
from projections.runner import ProjectionRunner
from projections.schema import build_copy, metadata

BUILD = "build_"


def replay(
    app: LedgerApplication,
    engine: Engine,
    to: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuilds all views up to `to` (default: the head); returns the position they reached."""
    tables = build_copy(BUILD)
    with engine.begin() as conn:
        for table in tables.values():
            table.drop(conn, checkfirst=True)
        for table in tables.values():
            table.create(conn)
    runner = ProjectionRunner(app, engine, tables)
    runner.catch_up(stop=to, progress=progress)
    reached = min(runner.positions().values())
    with engine.begin() as conn:
        swap(conn, tables)
    return reached


def swap(conn: Connection, built: dict[str, Table]) -> None:
    postgres = conn.dialect.name == "postgresql"
    existing = set(inspect(conn).get_table_names())
    for name, live in metadata.tables.items():
        fresh = built[name]
        if name in existing:
            conn.execute(text(f'DROP TABLE "{name}"'))
        conn.execute(text(f'ALTER TABLE "{fresh.name}" RENAME TO "{name}"'))
        if postgres:
            conn.execute(text(f'ALTER INDEX "pk_{fresh.name}" RENAME TO "pk_{name}"'))
        for index in live.indexes:
            _rename_index(conn, index, fresh.name, name, postgres)


def _rename_index(conn: Connection, index: Index, old_table: str, new_table: str, postgres: bool) -> None:
    columns = "_".join(c.name for c in index.columns)
    old, new = f"ix_{old_table}_{columns}", f"ix_{new_table}_{columns}"
    if postgres:
        conn.execute(text(f'ALTER INDEX "{old}" RENAME TO "{new}"'))
    else:
        conn.execute(text(f'DROP INDEX "{old}"'))
        index.create(conn)
