"""SPEC 4.7: every command event records its actor (key id, role, investor id; `cli:<operator>`;
`system:<component>`) and the request id, inside the hashed record; older events read as
`unknown`. Through the application, the CLI and the worker's jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dramatiq.brokers.stub import StubBroker
from eventsourcing.utils import get_topic
from typer.testing import CliRunner

from adapters.api.routers.audit import event_json
from adapters.cli import app as cli
from adapters.worker import Jobs
from ledger.actor import Actor, acting_as, system
from ledger.application import LedgerApplication
from ledger.commit import Command, UnitOfWork
from ledger.config import store_env
from ledger.domain.chain import ChainLog
from ledger.store import EVENTS_TABLE
from tests.integration.test_store_integrity import RawStore
from tests.support import ASSET_TERMS, onboard, open_asset, wallet_for

ADMIN = Actor("key:0123456789abcdef", "admin", None, "req-1")
ALICE = Actor("key:fedcba9876543210", "investor", "alice", "req-2")


def stored_actors(app: LedgerApplication, after: int = 0) -> list[Any]:
    return [json.loads(r.state).get("actor") for r in app.admin.records(after=after)]


def test_each_event_of_a_command_records_the_actor_it_was_issued_by(app: LedgerApplication) -> None:
    with acting_as(ADMIN):
        asset_id = open_asset(app)
        onboard(app, "alice")
        onboard(app, "bob")
        outcome = app.place_investment("alice", asset_id, 1_000_000)
        app.confirm_payment(str(outcome.result["investment_id"]), "pay-1")
    head = app.admin.head_position()
    with acting_as(ALICE):
        transfer = app.transfer(asset_id, "alice", "bob", 3)
    assert transfer.position > head
    assert stored_actors(app)[:head] == [ADMIN.as_state()] * head
    assert stored_actors(app, after=head) == [ALICE.as_state()] * (transfer.position - head)
    # the events still rebuild their aggregates, in a fresh process too
    again = LedgerApplication(app.env)
    try:
        assert again.get_asset(asset_id).balances == {"alice": 7, "bob": 3}
    finally:
        again.close()


def test_an_event_without_an_actor_reads_as_unknown(app: LedgerApplication) -> None:
    app.register_asset(dict(ASSET_TERMS))  # nobody said who: as events from before actors
    with acting_as(ADMIN):
        app.approve_asset(str(ASSET_TERMS["asset_id"]))
    first, second = (event_json(app, r) for r in app.admin.records())
    assert "actor" not in json.loads(next(app.admin.records()).state)
    assert first["actor"] == {"principal": "unknown", "role": None, "investor_id": None, "request_id": None}
    assert second["actor"] == ADMIN.as_state()
    assert "actor" not in second["data"]


def test_bulk_recorded_events_carry_the_actor_too(app: LedgerApplication) -> None:
    log = {
        "chain_id": 31337,
        "asset_id": "TOLL-JKT-01",
        "address": wallet_for("token"),
        "block_number": 1,
        "block_hash": "0x" + "ab" * 32,
        "tx_hash": "0x" + "cd" * 32,
        "log_index": 0,
        "name": "Transfer",
        "args": {},
    }

    def run(uow: UnitOfWork) -> dict[str, Any]:
        log_id, state = ChainLog.mirrored_state(ChainLog.Mirrored.create_timestamp(), log)
        uow.record_created_state(log_id, get_topic(ChainLog.Mirrored), state)
        return {}

    app.committer.execute(Command("mirror", {}, run, None, system("mirror")))
    assert stored_actors(app) == [system("mirror").as_state()]
    assert app.admin.verify().ok


def test_altering_an_events_actor_is_named_by_verify(app: LedgerApplication, store_url: str) -> None:
    with acting_as(ALICE):
        open_asset(app)
    with acting_as(ADMIN):
        app.pause_asset(str(ASSET_TERMS["asset_id"]))
    target = app.admin.head_position()
    record = next(iter(app.admin.records(after=target - 1)))
    forged = record.state.replace(ADMIN.principal.encode(), ALICE.principal.encode())
    assert forged != record.state
    raw = RawStore(store_url)
    raw.execute(
        f"UPDATE {raw.table(EVENTS_TABLE)} SET state = ? WHERE {raw.position} = ?",
        (forged, target),
        bypass_triggers=True,
    )
    result = app.admin.verify()
    assert (result.ok, result.first_invalid_position) == (False, target)


class FakeChainService:
    """The port the jobs use: each step records one command, as the real one would."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app

    def carry_out(self) -> int:
        onboard(self.app, "worker-made", kyc="pending")
        return 1

    def sync(self) -> list[Any]:
        onboard(self.app, "mirror-made", kyc="pending")
        return []

    def bound_assets(self) -> list[str]:
        return ["TOLL-JKT-01"]

    def reconcile(self, asset_id: str) -> tuple[Any, dict[str, Any]]:
        onboard(self.app, "reconciler-made", kyc="pending")
        return None, {"differences": []}


def test_the_worker_jobs_record_their_component_as_actor(sqlite_app: LedgerApplication) -> None:
    jobs = Jobs(FakeChainService(sqlite_app), StubBroker())  # type: ignore[arg-type]
    for name in ("carry_out_chain_operations", "mirror_chain", "reconcile_assets"):
        jobs.actors[name].fn()
    principals = [a["principal"] for a in stored_actors(sqlite_app)]  # two events a registration
    assert list(dict.fromkeys(principals)) == ["system:worker", "system:mirror", "system:reconciliation"]


def test_a_cli_command_records_its_operator(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    env = {"LEDGER_DATABASE_URL": url, "LEDGER_OPERATOR": "olga"}
    result = CliRunner().invoke(cli, ["investor", "register", "alice", "ID", wallet_for("alice")], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["history", "--json"], env=env)
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    assert {e["actor"]["principal"] for e in events} == {"cli:olga"}
    assert "Investor.Registered" in {e["type"] for e in events}
    exported = tmp_path / "history.jsonl"
    assert CliRunner().invoke(cli, ["export", str(exported)], env=env).exit_code == 0
    states = [json.loads(json.loads(line)["state"]) for line in exported.read_text().splitlines()]
    assert [s["actor"]["principal"] for s in states] == ["cli:olga"] * len(events)
    app = LedgerApplication(store_env(url))
    try:
        assert stored_actors(app) == [Actor("cli:olga").as_state()] * len(events)
    finally:
        app.close()
