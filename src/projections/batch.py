"""The rows one batch of events writes, flushed with its tracking position in one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from psycopg import Cursor, sql
from sqlalchemy import Connection, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite

# On PostgreSQL a group of at least this many upserts or updates is streamed with COPY into
# a temporary table and merged by one statement; smaller groups go by executemany, which
# needs no temporary table (a runner at the head writes a few rows per batch).
COPY_MIN_ROWS = 64


class Batch:
    """Row operations grouped by statement, each group sent as one executemany (or COPY).

    Inserts run first (a row always exists before it is updated or deleted), then the other
    groups in the order their statements first appear, rows in each group in the order
    they were added (two updates of one row by one statement keep their order: the last
    one wins). The rule for views: two *different* update statements may write the same
    column of the same row in one batch only if the one that appears first must also run
    first (as approve, then bind a token).

    Rows are given as dicts, or in bulk as tuples of the values of `columns`.
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.position = 0
        self._groups: dict[tuple[Any, ...], _Group] = {}  # insertion-ordered
        self._scratch = 0  # temporary tables made in this transaction

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        self.insert_rows(table, tuple(row), (tuple(row.values()),))

    def insert_rows(self, table: Table, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        self._group("insert", table, columns, ()).rows.extend(rows)

    def update(self, table: Table, where: dict[str, Any], values: dict[str, Any]) -> None:
        if where.keys() & values.keys():
            msg = f"an update of {table.name} sets a column it matches on"
            raise ValueError(msg)
        group = self._group("update", table, (*where, *values), tuple(where))
        group.rows.append((*where.values(), *values.values()))

    def upsert(self, table: Table, row: dict[str, Any]) -> None:
        self.upsert_rows(table, tuple(row), (tuple(row.values()),))

    def upsert_rows(self, table: Table, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        """Inserts rows, or updates the other `columns` of those whose primary key exists."""
        primary = tuple(c.name for c in table.primary_key.columns)
        self._group("upsert", table, columns, primary).rows.extend(rows)

    def delete_rows(self, table: Table, keys: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        """Deletes the rows whose `keys` columns hold the values given (after this batch's inserts)."""
        self._group("delete", table, keys, keys).rows.extend(rows)

    def _group(self, kind: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> _Group:
        key = (kind, table.name, columns, keys)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(kind, table, columns, keys)
        return group

    def flush(self, conn: Connection) -> None:
        cursor: Cursor[Any] | None = None
        if self.dialect == "postgresql":
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        inserts_first = sorted(self._groups.values(), key=lambda group: group.kind != "insert")
        for group in inserts_first:
            if not group.rows:
                continue
            if cursor is not None and group.kind == "insert":
                # Bulk appends go through COPY: one stream instead of a statement per row.
                _copy_rows(cursor, sql.Identifier(group.table.name), group.columns, group.rows)
            elif cursor is not None and len(group.rows) >= COPY_MIN_ROWS:
                self._scratch += 1
                group.merge(cursor, sql.Identifier(f"batch_{self._scratch}"))
            else:
                conn.execute(group.statement(self.dialect), group.parameters())
        self._groups.clear()


class _Group:
    """The rows of one statement, as tuples of the values of `columns`: an insert, an update
    of the other columns where `keys` match, an upsert (`keys` the primary key), or a delete
    where `keys` (all of `columns`) match."""

    def __init__(self, kind: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> None:
        self.kind = kind
        self.table = table
        self.columns = columns
        self.keys = keys
        self.values = tuple(c for c in columns if c not in keys)
        self.rows: list[tuple[Any, ...]] = []

    def statement(self, dialect: str) -> Any:
        table = self.table
        if self.kind == "insert":
            return table.insert()
        if self.kind == "upsert":
            query = (postgresql if dialect == "postgresql" else sqlite).insert(table)
            return query.on_conflict_do_update(
                index_elements=list(self.keys), set_={c: query.excluded[c] for c in self.values}
            )
        match = [table.c[column] == bindparam(f"k_{column}") for column in self.keys]
        if self.kind == "delete":
            return table.delete().where(*match)
        return table.update().where(*match).values({c: bindparam(f"v_{c}") for c in self.values})

    def parameters(self) -> list[dict[str, Any]]:
        names = self.columns
        if self.kind in ("update", "delete"):  # own names: a column's name is reserved for a SET clause
            names = tuple(f"{'k' if c in self.keys else 'v'}_{c}" for c in self.columns)
        return [dict(zip(names, row, strict=True)) for row in self.rows]

    def merge(self, cursor: Cursor[Any], scratch: sql.Identifier) -> None:
        """Streams the rows into a temporary table with COPY, then applies them in one statement.

        One statement may touch a row only once, so of several rows with the same key the
        last one is kept (the one executemany would have left).
        """
        key = itemgetter(*(self.columns.index(c) for c in self.keys))
        last = dict(zip(map(key, self.rows), self.rows, strict=True))
        target = sql.Identifier(self.table.name)
        names = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        cursor.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                scratch, names, target
            )
        )
        _copy_rows(cursor, scratch, self.columns, last.values())
        match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(c)) for c in self.keys)
        if self.kind == "delete":
            cursor.execute(
                sql.SQL("DELETE FROM {target} AS t USING {scratch} AS s WHERE {match}").format(
                    target=target, scratch=scratch, match=match
                )
            )
            return
        source = sql.Identifier("excluded" if self.kind == "upsert" else "s")
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = {1}.{0}").format(sql.Identifier(c), source) for c in self.values
        )
        if self.kind == "upsert":
            statement = sql.SQL(
                "INSERT INTO {target} ({names}) SELECT {names} FROM {scratch}"
                " ON CONFLICT ({keys}) DO UPDATE SET {assignments}"
            ).format(
                target=target,
                names=names,
                scratch=scratch,
                keys=sql.SQL(", ").join(map(sql.Identifier, self.keys)),
                assignments=assignments,
            )
        else:
            statement = sql.SQL(
                "UPDATE {target} AS t SET {assignments} FROM {scratch} AS s WHERE {match}"
            ).format(target=target, assignments=assignments, scratch=scratch, match=match)
        cursor.execute(statement)


def _copy_rows(
    cursor: Cursor[Any], table: sql.Identifier, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> None:
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as copy:
        for row in rows:
            copy.write_row(row)
