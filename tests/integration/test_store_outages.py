"""Reads after the database dropped its connections (SPEC 5, amendments: store_unavailable).

The server ends every backend of the API's event-loop read pool (what a restart does to
them); the next read must not fail: the broken connections are discarded and the read runs
once more on a fresh one. Only this test's own backends are ended, never the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from adapters.api.readpool import MIN_CONNECTIONS, ReadPool
from projections.migrate import upgrade
from projections.schema import engine_for
from tests.conftest import PG_URL

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


async def backend_pid(conn: AsyncConnection[Any]) -> int:
    cursor = await conn.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def pids_of(pool: ReadPool) -> set[int]:
    """The backends of every connection the pool holds (all taken at once)."""
    raw = pool._pool  # the test needs every connection at once, not one read
    await raw.wait()
    conns = [await raw.getconn() for _ in range(MIN_CONNECTIONS)]
    try:
        return {await backend_pid(conn) for conn in conns}
    finally:
        for conn in conns:
            await raw.putconn(conn)


def test_a_read_after_the_server_ended_every_pooled_connection_succeeds(pg_schema_url: str) -> None:
    engine = engine_for(pg_schema_url)
    upgrade(engine)

    async def scenario() -> None:
        pool = await ReadPool.open(engine)
        assert pool is not None
        try:
            before = await pids_of(pool)
            assert len(before) == MIN_CONNECTIONS
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                for pid in before:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            after = await pool.read(backend_pid)
            assert after not in before
        finally:
            await pool.close()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
