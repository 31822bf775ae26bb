"""The hot read path on PostgreSQL: plain psycopg connections awaited on the event loop, so a
read costs neither a worker-thread hop nor the SQLAlchemy layer (SPEC 8, api throughput)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from fastapi.concurrency import run_in_threadpool
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

# A request holds a connection for its one statement only; enough that concurrent requests
# rarely queue for one (a queued request costs the event loop more than an idle connection).
MIN_CONNECTIONS = 4
MAX_CONNECTIONS = 16
# While the database is away a read waits this long for a connection, then answers 503.
WAIT_SECONDS = 3.0
logger = logging.getLogger(__name__)
T = TypeVar("T")


class ReadPool:
    """Autocommit connections to the read database, usable on the event loop that opened them."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, engine: Engine) -> ReadPool | None:
        """A pool on the same database, role and search path as `engine`; None unless PostgreSQL
        (or if the database cannot be reached now: reads then go through `engine`, as on SQLite)."""
        if engine.dialect.name != "postgresql":
            return None
        try:
            conninfo = await run_in_threadpool(_conninfo_of, engine)
        except SQLAlchemyError as error:
            logger.warning("no event-loop read pool (%s); reads use worker threads", type(error).__name__)
            return None
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo,
            min_size=MIN_CONNECTIONS,
            max_size=MAX_CONNECTIONS,
            kwargs={"autocommit": True},
            timeout=WAIT_SECONDS,
            open=False,
        )
        await pool.open()
        return cls(pool)

    def usable(self) -> bool:
        """Only on its own loop (a test client may call the app from other loops)."""
        return asyncio.get_running_loop() is self._loop

    async def read(self, query: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Runs `query` on a pooled connection. One found broken (the server restarted since it
        was opened) is discarded, with every idle one the restart broke too, and the query runs
        once more on a fresh connection; a second failure is the caller's (503)."""
        try:
            async with self._pool.connection() as conn:
                return await query(conn)
        except PoolTimeout:
            raise  # no connection to be had: retrying would only wait again
        except psycopg.OperationalError as error:
            logger.warning("read pool: dropping broken connections (%s)", type(error).__name__)
            await self._pool.check()
        async with self._pool.connection() as conn:
            return await query(conn)

    async def close(self) -> None:
        await self._pool.close()


def _conninfo_of(engine: Engine) -> str:
    """The connection string of one of the engine's own connections (whatever set its search path),
    with the session's time zone UTC: timestamps are read as UTC whatever the server's zone (as
    `UtcDateTime` reads them), with `timezone.utc`, which orjson writes itself; a zone named
    otherwise (the server's `Etc/UTC`) is a `ZoneInfo` that orjson asks for every timestamp's offset
    (twice the time to write a page of 500 investors)."""
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        if driver is None:  # pragma: no cover - a checked-out connection always has one
            msg = "the engine returned a closed connection"
            raise RuntimeError(msg)
        info = driver.info
        options = f"{conninfo_to_dict(info.dsn).get('options') or ''} -c TimeZone=UTC".strip()
        return make_conninfo(info.dsn, password=info.password or None, options=options)
