"""Shared fixtures: a controllable clock, and the ledger on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from hypothesis import settings

from adapters.chain.anvil import Anvil
from adapters.chain.artifacts import ArtifactNotFoundError, anvil_binary
from ledger.application import LedgerApplication
from ledger.config import store_env

PG_URL = os.environ.get("LEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("LEDGER_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("LEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# CI (`.ci/run` sets LEDGER_REQUIRE_SERVICES=1) draws the same Hypothesis examples on every
# run, so what passes before a push is what CI runs, and a failure there replays; other
# runs draw new examples each time, to keep looking.
settings.register_profile("ci", derandomize=True, print_blob=True)
if REQUIRE_SERVICES:
    settings.load_profile("ci")


class FakeClock:
    """A clock the test moves by hand (lock-ups, KYC expiry, vote deadlines)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def postgres_available() -> str | None:
    """None when the test PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL at {PG_URL} is not reachable: {error}"


def require_postgres() -> None:
    reason = postgres_available()
    if reason is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextmanager
def scratch_schema_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema of its own, dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema of its own, dropped afterwards."""
    with scratch_schema_url() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.sqlite3"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def app(store_url: str, clock: FakeClock) -> Iterator[LedgerApplication]:
    application = LedgerApplication(store_env(store_url), clock=clock)
    yield application
    application.close()


@pytest.fixture
def sqlite_app(tmp_path: Path, clock: FakeClock) -> Iterator[LedgerApplication]:
    application = LedgerApplication(store_env(f"sqlite:///{tmp_path}/ledger.sqlite3"), clock=clock)
    yield application
    application.close()


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    try:
        anvil_binary()
    except ArtifactNotFoundError as error:
        if REQUIRE_SERVICES:
            pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {error}")
        pytest.skip(str(error))
    node = Anvil.start()
    yield node
    node.stop()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, emptied before and after (skipped, or failed under
    LEDGER_REQUIRE_SERVICES=1, when Redis is not reachable)."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except redis.RedisError as error:
        reason = f"Redis at {REDIS_URL} is not reachable: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(f"LEDGER_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
