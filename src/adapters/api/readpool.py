"""The hot read path on PostgreSQL: plain psycopg connections awaited on the event loop, so a
read costs neither a worker-thread hop nor the SQLAlchemy layer (SPEC 8, api throughput)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi.concurrency import run_in_threadpool
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

# A request holds a connection for its one statement only; enough that concurrent requests
# rarely queue for one (a queued request costs the event loop more than an idle connection).
MIN_CONNECTIONS = 4
MAX_CONNECTIONS = 16
logger = logging.getLogger(__name__)


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
            open=False,
        )
        await pool.open()
        return cls(pool)

    def usable(self) -> bool:
        """Only on its own loop (a test client may call the app from other loops)."""
        return asyncio.get_running_loop() is self._loop

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return self._pool.connection()

    async def close(self) -> None:
        await self._pool.close()


def _conninfo_of(engine: Engine) -> str:
    """The connection string of one of the engine's own connections (whatever set its search path)."""
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        if driver is None:  # pragma: no cover - a checked-out connection always has one
            msg = "the engine returned a closed connection"
            raise RuntimeError(msg)
        info = driver.info
        return make_conninfo(info.dsn, password=info.password or None)
