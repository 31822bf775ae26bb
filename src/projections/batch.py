"""The rows one batch of events writes, flushed with its tracking position in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite


class Batch:
    """Ordered row operations; consecutive ones with the same statement run as one executemany."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.position = 0
        self.count = 0
        self._ops: list[tuple[Any, dict[str, Any]]] = []
        self._statements: dict[tuple[Any, ...], Any] = {}

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        key = ("insert", table.name, tuple(row))
        if key not in self._statements:
            self._statements[key] = table.insert()
        self._ops.append((self._statements[key], row))

    def update(self, table: Table, where: dict[str, Any], values: dict[str, Any]) -> None:
        key = ("update", table.name, tuple(where), tuple(values))
        if key not in self._statements:
            statement = table.update()
            for column in where:
                statement = statement.where(table.c[column] == bindparam(f"k_{column}"))
            self._statements[key] = statement.values({c: bindparam(f"v_{c}") for c in values})
        params = {f"k_{c}": v for c, v in where.items()} | {f"v_{c}": v for c, v in values.items()}
        self._ops.append((self._statements[key], params))

    def upsert(self, table: Table, row: dict[str, Any]) -> None:
        key = ("upsert", table.name, tuple(row))
        if key not in self._statements:
            dialect = postgresql if self.dialect == "postgresql" else sqlite
            statement = dialect.insert(table)
            primary = [c.name for c in table.primary_key.columns]
            statement = statement.on_conflict_do_update(
                index_elements=primary,
                set_={c: statement.excluded[c] for c in row if c not in primary},
            )
            self._statements[key] = statement
        self._ops.append((self._statements[key], row))

    def flush(self, conn: Connection) -> None:
        run: list[dict[str, Any]] = []
        current: Any = None
        for statement, params in self._ops:
            if statement is not current and run:
                conn.execute(current, run)
                run = []
            current = statement
            run.append(params)
        if run:
            conn.execute(current, run)
        self._ops.clear()
