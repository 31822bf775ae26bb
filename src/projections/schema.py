"""What every read model shares: the metadata, exact big integers, tracking, engines.

Tables are defined once here and in the view modules; nothing connects or creates
tables at import time. Migrations (alembic, `migrations/`) create and evolve them;
`replay` builds fresh copies under a `build_` prefix and swaps them in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.sql.elements import conv
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)
DIGITS = 40


class Exact(TypeDecorator[int]):
    """A non-negative integer of up to 40 digits (quantities, money): NUMERIC on PostgreSQL,
    zero-padded text on SQLite, so that both compare and sort exactly."""

    impl = Numeric(DIGITS, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(DIGITS))
        return dialect.type_descriptor(Numeric(DIGITS, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return str(value).zfill(DIGITS)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back with its UTC offset (SQLite drops it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


tracking = Table(
    "rm_tracking",
    metadata,
    Column("view", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection on one consistent snapshot of every read model."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def engine_for(url: str) -> Engine:
    """An engine on the read database; `?schema=NAME` on PostgreSQL sets the search path."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            dbapi_connection.isolation_level = None  # transactions are begun explicitly below

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # A projection's transaction takes the write lock up front, so its reads
            # and its writes see one state (execution option `writer=True`).
            writer = conn.get_execution_options().get("writer")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    schema = parse_qs(parsed.query).get("schema", [None])[0]
    base = (
        url.split("?", 1)[0]
        .replace("postgresql://", "postgresql+psycopg://", 1)
        .replace("postgres://", "postgresql+psycopg://", 1)
    )
    options = {"options": f"-csearch_path={schema}"} if schema else {}
    # As many pooled connections as the API's worker threads, recycled rather than pinged
    # before every use (a ping is a round trip on each request).
    return create_engine(base, connect_args=options, pool_size=40, max_overflow=10, pool_recycle=300)


def build_copy(prefix: str) -> dict[str, Table]:
    """Fresh copies of every read-model table under `prefix` (index and key names follow)."""
    target = MetaData(naming_convention=NAMING)
    copies: dict[str, Table] = {}
    for name, table in metadata.tables.items():
        copy = table.to_metadata(target, name=prefix + name)
        copy.primary_key.name = conv(f"pk_{copy.name}")
        for index in copy.indexes:  # an index declared on the table keeps its name in a copy
            index.name = conv(f"ix_{copy.name}_{'_'.join(c.name for c in index.columns)}")
        copies[name] = copy
    return copies


def view_position(conn: Any) -> int:
    """The position every view has reached (the lowest of them), read in the caller's snapshot."""
    return int(conn.execute(select(func.coalesce(func.min(tracking.c.position), 0))).scalar() or 0)
