"""The pipelined catch-up on PostgreSQL: a writer thread commits transaction k while the runner
applies k+1 to the views' memory. The read models must come out exactly as one runner
processing batch after batch makes them, also when another runner commits in between."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select

from ledger.application import LedgerApplication
from ledger.config import store_env
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for, metadata
from tests.conftest import PG_URL, FakeClock
from tests.integration.test_read_models import scenario
from tests.support import holding, onboard

pytestmark = pytest.mark.postgres

SMALL = {"batch_size": 5, "transaction_events": 5}


@pytest.fixture
def ledger(pg_schema_url: str, clock: FakeClock) -> Iterator[LedgerApplication]:
    app = LedgerApplication(store_env(pg_schema_url), clock=clock)
    try:
        facts = scenario(app, clock)
        for name in ("dave", "erin"):
            onboard(app, name, "ID")
            holding(app, facts["asset_id"], name, 200)
        for i in range(30):
            app.transfer(facts["asset_id"], "dave" if i % 2 else "erin", "erin" if i % 2 else "dave", 1)
        yield app
    finally:
        app.close()


@pytest.fixture
def read_schema() -> Iterator[Any]:
    """Engines on fresh read-model schemas of the test database, apart from the store's."""
    made: list[tuple[str, Engine]] = []

    def make() -> Engine:
        name = f"rm_{len(made)}_{id(made):x}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"'.encode())
        engine = engine_for(f"{PG_URL}?schema={name}")
        upgrade(engine)
        made.append((name, engine))
        return engine

    yield make
    for name, engine in made:
        engine.dispose()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE'.encode())


def contents(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for name, table in metadata.tables.items()
        }


def test_a_pipelined_catch_up_makes_what_batch_after_batch_makes(
    ledger: LedgerApplication, read_schema: Any
) -> None:
    pipelined = ProjectionRunner(ledger, read_schema(), pipelined=True, **SMALL)
    one_by_one = ProjectionRunner(ledger, read_schema(), pipelined=False, **SMALL)
    head = ledger.admin.head_position()
    assert pipelined.catch_up() == one_by_one.catch_up() == head
    assert pipelined.positions() == one_by_one.positions() == dict.fromkeys(pipelined.positions(), head)
    assert contents(pipelined.engine) == contents(one_by_one.engine)


def test_a_runner_committing_in_between_makes_the_pipelined_one_start_again_from_there(
    ledger: LedgerApplication, read_schema: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = read_schema()
    pipelined = ProjectionRunner(ledger, shared, pipelined=True, **SMALL)
    other = ProjectionRunner(ledger, shared, pipelined=False, **SMALL)
    commit = ProjectionRunner._commit
    commits: list[bool] = []

    def interleaved(self: ProjectionRunner, expected: int, batch: Any, last: int) -> bool:
        if self is pipelined and len(commits) == 2:
            assert other.process_batch() == SMALL["batch_size"]  # moves the views under the writer
        done = commit(self, expected, batch, last)
        commits.append(done)
        return done

    monkeypatch.setattr(ProjectionRunner, "_commit", interleaved)
    head = ledger.admin.head_position()
    processed = pipelined.catch_up()
    assert False in commits  # the speculative batch built on the old position was refused
    assert processed == head - SMALL["batch_size"]  # every event once: the other runner did five
    reference = ProjectionRunner(ledger, read_schema(), pipelined=False, **SMALL)
    reference.catch_up()
    assert pipelined.positions() == dict.fromkeys(pipelined.positions(), head)
    assert contents(shared) == contents(reference.engine)
