"""Least privilege on PostgreSQL (SPEC 2): `ledger init` runs as an owner role and grants the
runtime role only SELECT and INSERT on the history; the service works as that role, which
cannot DROP, ALTER, UPDATE, DELETE or TRUNCATE the history; a changed definition is found."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adapters import bootstrap
from adapters.api.app import create_app
from adapters.api.keys import KeyStore
from adapters.cli import app as cli
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import ConfigurationError
from ledger.outbox import OutboxEntry
from ledger.store import EVENTS_TABLE, HASHES_TABLE, IDEMPOTENCY_TABLE, IdempotencyRecord
from projections.holdings import current_cap_table
from projections.schema import snapshot, view_position
from tests.conftest import PG_URL, FakeClock, require_postgres
from tests.e2e.conftest import Api, build_world
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Roles:
    schema: str
    owner: str
    runtime: str
    password: str  # for a server that asks for one (the test server trusts local connections)

    def url(self, role: str, schema: bool = True) -> str:
        parsed = urlparse(PG_URL)
        netloc = f"{role}:{self.password}@{parsed.hostname}:{parsed.port or 5432}"
        query = f"schema={self.schema}" if schema else ""
        return urlunparse(parsed._replace(netloc=netloc, query=query))

    @property
    def env(self) -> dict[str, str]:
        return {
            "LEDGER_DATABASE_URL": self.url(self.runtime),
            "LEDGER_ADMIN_DATABASE_URL": self.url(self.owner, schema=False),
        }

    @property
    def settings(self) -> Settings:
        return Settings(database_url=self.url(self.runtime), admin_database_url=self.url(self.owner, False))


@pytest.fixture
def roles() -> Iterator[Roles]:
    """An owner and a runtime role of their own (unique names) and a fresh schema the owner owns."""
    require_postgres()
    tag = uuid.uuid4().hex[:10]
    made = Roles(f"t_{tag}", f"ledger_owner_{tag}", f"ledger_runtime_{tag}", uuid.uuid4().hex)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{made.owner}\" LOGIN PASSWORD '{made.password}'")
        conn.execute(f"CREATE ROLE \"{made.runtime}\" LOGIN PASSWORD '{made.password}'")
        conn.execute(f'CREATE SCHEMA "{made.schema}" AUTHORIZATION "{made.owner}"')
    yield made
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{made.schema}" CASCADE')
        for role in (made.runtime, made.owner):
            conn.execute(f'DROP OWNED BY "{role}" CASCADE')
            conn.execute(f'DROP ROLE "{role}"')


def ledger(roles: Roles, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=roles.env)
    return result.exit_code, result.stdout + result.stderr


def runtime_app(roles: Roles) -> LedgerApplication:
    app = bootstrap.build_application(roles.settings)
    bootstrap.startup_check(app, roles.settings)
    return app


def scenario(app: LedgerApplication) -> str:
    """Every kind of command the API offers, as the runtime role."""
    asset_id = open_asset(app)
    for investor in ("alice", "bob", "carol"):
        onboard(app, investor)
    holding(app, asset_id, "alice", 50)
    holding(app, asset_id, "bob", 10)
    app.transfer(asset_id, "alice", "carol", 20)
    app.freeze_tokens(asset_id, "bob", 5)
    distribution = app.declare_distribution(asset_id, 1_000)
    app.pay_distribution(distribution.result["distribution_id"])
    proposal = app.create_proposal(asset_id, "Refinance", ["yes", "no"], 5_000)
    app.cast_vote(proposal.result["proposal_id"], "alice", "yes")
    app.close_proposal(proposal.result["proposal_id"])
    return asset_id


def test_init_as_owner_then_every_command_works_as_the_runtime_role(roles: Roles) -> None:
    code, output = ledger(roles, "init")
    assert code == 0, output
    app = runtime_app(roles)
    try:
        asset_id = scenario(app)
        runner = bootstrap.build_runner(app, roles.settings)
        try:
            runner.catch_up()
            KeyStore(runner.engine).create("admin")
            with snapshot(runner.engine) as conn:
                table = current_cap_table(conn, asset_id, view_position(conn))
            assert {h.investor_id: h.quantity for h in table.holders} == {"alice": 30, "bob": 10, "carol": 20}
        finally:
            runner.engine.dispose()
        assert app.admin.verify().ok
    finally:
        app.close()
    code, output = ledger(roles, "replay")  # the owner swaps in rebuilt tables, then grants again
    assert code == 0, output
    app = runtime_app(roles)
    runner = bootstrap.build_runner(app, roles.settings)
    try:
        app.transfer(asset_id, "carol", "alice", 1)
        runner.catch_up()
    finally:
        runner.engine.dispose()
        app.close()
    code, output = ledger(roles, "verify")
    assert code == 0, output
    assert "privileges: the runtime role can only read and append" in " ".join(output.split())


def test_the_http_api_works_as_the_runtime_role(roles: Roles) -> None:
    """`build_world` drives every kind of command of the API (assets, investors, investments,
    freezes, distributions, proposals and votes) with the projections running."""
    code, output = ledger(roles, "init")
    assert code == 0, output
    services = bootstrap.build_services(roles.settings)
    bootstrap.startup_check(services.ledger, roles.settings)
    url = roles.settings.database_url
    thread = threading.Thread(target=services.runner.run_forever, args=(url,), kwargs={"idle": 0.02})
    thread.start()
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            api = Api(client, services, FakeClock(), url)
            ids = build_world(api)
            table = api.read(f"/v1/assets/{ids['main']}/cap-table")
            assert {h["investor_id"] for h in table["holders"]} >= {"alice", "bob", "carol"}
            assert client.get("/readyz").json()["status"] == "ready"
    finally:
        services.runner.stop()
        thread.join(timeout=10)
        services.ledger.close()
        services.runner.engine.dispose()


def test_a_large_batch_and_the_outbox_worker_work_as_the_runtime_role(roles: Roles) -> None:
    code, output = ledger(roles, "init")
    assert code == 0, output
    app = runtime_app(roles)
    try:
        # 64 events or more go by the pipelined path: the table lock via `ledger_lock_events`.
        events = [StoredEvent(uuid4(), 1, "tests:Raw", json.dumps({"i": i}).encode()) for i in range(100)]
        positions = app.recorder.insert_events(
            events,
            idempotency=[IdempotencyRecord("key-100", "h", "{}", 99)],
            outbox=[OutboxEntry(0, "ASSET-1", "mint", {"n": 1})],
            commit_info={},
        )
        assert positions is not None and len(positions) == 100
        row = app.outbox.open_rows()[0]
        app.outbox.update(row.seq, state="signed", attempts=1, nonce=7)  # the worker advances a row
        changed = app.outbox.get(row.seq)
        assert changed is not None and (changed.state, changed.nonce) == ("signed", 7)
        with app.outbox.exclusive() as held:
            assert held
        verification = app.admin.verify()
        assert verification.ok and verification.events_checked == 100
    finally:
        app.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE {table} CASCADE",
        "ALTER TABLE {table} ADD COLUMN note text",
        "ALTER TABLE {table} DISABLE TRIGGER ALL",
        "UPDATE {table} SET position = position",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
        "CREATE TRIGGER sneak BEFORE INSERT ON {table} FOR EACH ROW "
        "EXECUTE FUNCTION {schema}.ledger_refuse_change()",
    ],
)
@pytest.mark.parametrize("table", [EVENTS_TABLE, HASHES_TABLE, IDEMPOTENCY_TABLE])
def test_the_runtime_role_cannot_change_or_destroy_the_history(
    roles: Roles, statement: str, table: str
) -> None:
    code, output = ledger(roles, "init")
    assert code == 0, output
    app = runtime_app(roles)
    try:
        scenario(app)
        before = app.admin.verify()
    finally:
        app.close()
    if table == EVENTS_TABLE:
        statement = statement.replace("position = position", "topic = topic")
    sql = statement.format(table=f'"{roles.schema}".{table}', schema=f'"{roles.schema}"')
    runtime = roles.url(roles.runtime, schema=False)
    with psycopg.connect(runtime) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql)
    for name in ("ledger_append", "ledger_lock_events"):
        with psycopg.connect(runtime) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'DROP FUNCTION "{roles.schema}".{name}')
    app = runtime_app(roles)
    try:
        assert app.admin.verify() == before
    finally:
        app.close()


def owner_execute(roles: Roles, sql: str) -> None:
    with psycopg.connect(roles.url(roles.owner, schema=False), autocommit=True) as conn:
        conn.execute(sql.encode())


def function_definition(roles: Roles, name: str) -> str:
    with psycopg.connect(roles.url(roles.owner, schema=False)) as conn:
        row = conn.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proname = %s",
            (roles.schema, name),
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("change", ["function", "trigger"])
def test_a_changed_definition_is_found_at_start_up_and_by_verify(roles: Roles, change: str) -> None:
    code, output = ledger(roles, "init")
    assert code == 0, output
    if change == "function":  # the append no longer links the hash chain
        definition = function_definition(roles, "ledger_append")
        assert "INSERT INTO" in definition
        owner_execute(roles, definition.replace("links[i] := prev_hash;", "links[i] := prev_hash; -- quiet"))
    else:
        owner_execute(
            roles,
            f"CREATE OR REPLACE TRIGGER {EVENTS_TABLE}_refuse_row_change BEFORE UPDATE ON "
            f'"{roles.schema}".{EVENTS_TABLE} FOR EACH ROW '
            f'EXECUTE FUNCTION "{roles.schema}".ledger_refuse_change()',
        )
    app = bootstrap.build_application(roles.settings)
    try:
        with pytest.raises(ConfigurationError, match="digest: definitions changed"):
            bootstrap.startup_check(app, roles.settings)
    finally:
        app.close()
    code, output = ledger(roles, "project", "--once")
    assert code == 1 and "definitions changed" in " ".join(output.split()), output
    code, output = ledger(roles, "verify", "--json")
    assert code == 1, output
    checks: list[dict[str, Any]] = json.loads(output[: output.rindex("}") + 1])["checks"]
    assert [c["name"] for c in checks if not c["ok"]] == ["digest"]
    # The owner re-hardens the store (ledger init), saying what it replaces: the ledger's
    # definitions, digested anew.
    code, output = ledger(roles, "init")
    assert code == 0 and "before init, digest: definitions changed" in " ".join(output.split())
    assert ledger(roles, "verify")[0] == 0
    code, output = ledger(roles, "init")
    assert code == 0 and "before init" not in output


@pytest.mark.slow
def test_the_demo_runs_as_the_runtime_role(roles: Roles) -> None:
    code, output = ledger(roles, "init")
    assert code == 0, output
    code, output = ledger(roles, "demo", "--json")
    assert code == 0, output
    assert json.loads(output[output.index("{") : output.rindex("}") + 1])["hash_chain_ok"] is True
    # The library's own append function (no hash links) is not the runtime role's to call.
    schema = f'"{roles.schema}"'
    with psycopg.connect(roles.url(roles.runtime, schema=False)) as conn, pytest.raises(
        psycopg.errors.InsufficientPrivilege
    ):
        conn.execute(f"SELECT {schema}.es_insert_events_uuid(ARRAY[]::{schema}.stored_event_uuid[])")
