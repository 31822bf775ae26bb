"""Connections the database dropped (SPEC 5 amendments, SPEC 9: what a restart does to them).

- The server ends every backend of the API's event-loop read pool; the next read must not
  fail: the broken connections are discarded and the read runs once more on a fresh one.
- The server ends the projection runner's LISTEN connection (the runner used to die there for
  good); the runner must reconnect and keep the read models at the head.

Only this test's own backends are ended, never the server (a full restart is in
tests/e2e/test_database_restart.py, on a throwaway cluster).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from adapters.api.readpool import MIN_CONNECTIONS, ReadPool
from ledger.application import LedgerApplication
from ledger.config import store_env
from projections import runner as runner_module
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for
from tests.conftest import PG_URL
from tests.support import onboard, open_asset

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


def terminate(pid: int) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_the_projection_runner_outlives_its_listen_connection(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners: list[Any] = []

    class Recorded(runner_module._Listener):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            listeners.append(self)

    monkeypatch.setattr(runner_module, "_Listener", Recorded)
    app = LedgerApplication(store_env(pg_schema_url))
    engine = engine_for(pg_schema_url)
    upgrade(engine)
    runner = ProjectionRunner(app, engine)
    thread = threading.Thread(target=runner.run_forever, args=(pg_schema_url,), kwargs={"idle": 0.05})
    thread.start()
    try:
        open_asset(app)
        assert runner.wait_for(app.admin.head_position(), timeout=30)
        assert len(listeners) == 1
        terminate(listeners[0].conn.info.backend_pid)
        deadline = time.monotonic() + 30
        while len(listeners) < 2 and time.monotonic() < deadline:  # the broken wait fails, a new one listens
            onboard(app, f"investor-{time.monotonic_ns()}")
            time.sleep(0.1)
        assert len(listeners) >= 2
        onboard(app, "after-the-reconnect")
        assert runner.wait_for(app.admin.head_position(), timeout=30)
        assert runner.running is True
        assert runner.last_error is None
    finally:
        runner.stop()
        thread.join(timeout=30)
        app.close()
        engine.dispose()
    assert runner.running is False
