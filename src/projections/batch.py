"""The rows one batch of events writes, flushed with its tracking position in one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite


class Batch:
    """Row operations grouped by statement, each group sent as one executemany (or COPY).

    Inserts run first (a row always exists before it is updated), then the other
    groups in the order their statements first appear, rows in each group in the order
    they were added (two updates of one row by one statement keep their order). The
    rule for views: two *different* update statements may write the same column of the
    same row in one batch only if the one that appears first must also run first (as
    approve, then bind a token).
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.position = 0
        self._groups: dict[tuple[Any, ...], tuple[Any, list[dict[str, Any]]]] = {}  # insertion-ordered
        self._copies: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        if self.dialect == "postgresql":
            # Bulk appends go through COPY: one stream instead of a statement per row.
            self._copies.setdefault((table.name, tuple(row)), []).append(tuple(row.values()))
            return
        self._add(("insert", table.name, tuple(row)), table.insert, row)

    def update(self, table: Table, where: dict[str, Any], values: dict[str, Any]) -> None:
        def statement() -> Any:
            query = table.update()
            for column in where:
                query = query.where(table.c[column] == bindparam(f"k_{column}"))
            return query.values({c: bindparam(f"v_{c}") for c in values})

        params = {f"k_{c}": v for c, v in where.items()} | {f"v_{c}": v for c, v in values.items()}
        self._add(("update", table.name, tuple(where), tuple(values)), statement, params)

    def upsert(self, table: Table, row: dict[str, Any]) -> None:
        def statement() -> Any:
            dialect = postgresql if self.dialect == "postgresql" else sqlite
            query = dialect.insert(table)
            primary = [c.name for c in table.primary_key.columns]
            return query.on_conflict_do_update(
                index_elements=primary, set_={c: query.excluded[c] for c in row if c not in primary}
            )

        self._add(("upsert", table.name, tuple(row)), statement, row)

    def _add(self, key: tuple[Any, ...], make: Any, params: dict[str, Any]) -> None:
        if key not in self._groups:
            self._groups[key] = (make(), [])
        self._groups[key][1].append(params)

    def flush(self, conn: Connection) -> None:
        if self._copies:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for (table, names), values in self._copies.items():
                columns = ", ".join(f'"{name}"' for name in names)
                with cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
                    for row in values:
                        copy.write_row(row)
        inserts_first = sorted(self._groups.items(), key=lambda group: group[0][0] != "insert")
        for _, (statement, rows) in inserts_first:
            conn.execute(statement, rows)
        self._copies.clear()
        self._groups.clear()
