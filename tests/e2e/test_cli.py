"""The operator's CLI end to end on the embedded store: exit codes, verify, export and import."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3"}


def ledger(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout + (result.stderr if result.exit_code else "")


def test_demo_loads_once_and_verifies(env: dict[str, str]) -> None:
    assert ledger(env, "init")[0] == 0
    code, output = ledger(env, "demo", "--json")
    assert code == 0
    summary = json.loads(output)
    assert summary["hash_chain_ok"] is True
    assert summary["investors"] >= 300
    assert summary["commands_accepted"] > 1000
    again = json.loads(ledger(env, "demo", "--json")[1])
    assert again["head_position"] == summary["head_position"]
    code, output = ledger(env, "verify", "--json")
    assert (code, json.loads(output)["ok"]) == (0, True)


def test_verify_exits_1_and_names_an_event_altered_behind_the_ledgers_back(
    env: dict[str, str], tmp_path: Path
) -> None:
    ledger(
        env,
        "asset",
        "register",
        "WATER-01",
        "--name",
        "Water plant",
        "--symbol",
        "W1",
        "--currency",
        "IDR",
        "--unit-price",
        "1000",
        "--authorized-supply",
        "1000000",
        "--min-investment",
        "100",
        "--max-investment",
        "1000000",
    )
    ledger(env, "asset", "approve", "WATER-01")
    ledger(env, "asset", "offering", "WATER-01", "--open")
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    conn.execute("DROP TRIGGER ledger_events_refuse_update")
    conn.execute("UPDATE ledger_events SET state = CAST('{}' AS BLOB) WHERE rowid = 2")
    conn.commit()
    conn.close()
    code, output = ledger(env, "verify", "--json")
    assert code == 1
    assert json.loads(output)["first_invalid_position"] == 2


def test_export_then_import_reproduces_the_head_hash(env: dict[str, str], tmp_path: Path) -> None:
    ledger(env, "demo")
    exported = tmp_path / "history.jsonl"
    code, output = ledger(env, "export", str(exported), "--json")
    assert code == 0
    head_hash = json.loads(output)["head_hash"]
    other = {"LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/copy.sqlite3"}
    code, output = ledger(other, "import", str(exported), "--json")
    assert code == 0, output
    assert json.loads(output)["head_hash"] == head_hash
    assert json.loads(ledger(other, "verify", "--json")[1])["head_hash"] == head_hash


def test_a_rejected_command_exits_1_with_its_code_and_bad_input_exits_2(env: dict[str, str]) -> None:
    code, output = ledger(env, "asset", "approve", "NOPE-1")
    assert code == 1
    assert "not_found" in output
    code, output = ledger(env, "investor", "register", "alice", "XX", "0x" + "ab" * 20)
    assert code == 2
    assert "validation_error" in output
    assert ledger(env, "transfer")[0] == 2


def test_asset_value_records_a_valuation_and_refuses_one_dated_in_the_future(env: dict[str, str]) -> None:
    ledger(env, "init")
    terms = ["--name", "Water", "--symbol", "W1", "--currency", "IDR", "--unit-price", "1000"]
    terms += ["--authorized-supply", "1000", "--min-investment", "1", "--max-investment", "1000"]
    assert ledger(env, "asset", "register", "WATER-01", *terms)[0] == 0
    head = json.loads(ledger(env, "verify", "--json")[1])["head_position"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    code, output = ledger(
        env,
        "asset",
        "value",
        "WATER-01",
        "--price-per-token",
        "900",
        "--valued-at",
        tomorrow,
        "--source",
        "NAV-7",
    )
    assert code == 1
    assert "invalid_valuation" in output
    assert json.loads(ledger(env, "verify", "--json")[1])["head_position"] == head
    now = datetime.now(UTC).isoformat()
    code, output = ledger(
        env,
        "asset",
        "value",
        "WATER-01",
        "--price-per-token",
        "900",
        "--valued-at",
        now,
        "--source",
        "NAV-7",
        "--json",
    )
    assert code == 0, output
    assert json.loads(output)["position"] == head + 1


def test_the_commands_whose_arguments_come_from_their_typed_values_run_end_to_end(
    env: dict[str, str],
) -> None:
    """Each operator command whose arguments and options are derived from its typed value
    (`options_of`) is accepted with the arguments it always took."""

    def ok(*args: str) -> dict[str, object]:
        code, output = ledger(env, *args, "--json")
        assert code == 0, (args, output)
        result: dict[str, object] = json.loads(output)
        return result

    ledger(env, "init")
    terms = ["--name", "Water", "--symbol", "W1", "--currency", "IDR", "--unit-price", "1000"]
    terms += ["--authorized-supply", "1000000", "--min-investment", "1", "--max-investment", "1000000"]
    ok("asset", "register", "WATER-01", *terms)
    ok("asset", "approve", "WATER-01")
    ok("asset", "offering", "WATER-01", "--open")
    ok("investor", "register", "alice", "ID", "0x" + "a1" * 20)
    ok("investor", "register", "bob", "ID", "0x" + "b1" * 20)
    next_year = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    ok("investor", "kyc", "alice", "approved", "--expires-at", next_year)
    ok("investor", "kyc", "bob", "approved")
    ok("investor", "add-wallet", "alice", "0x" + "a2" * 20)
    ok("investor", "recover", "alice", "0x" + "a2" * 20, "0x" + "a3" * 20)
    investment = ok("investment", "place", "alice", "WATER-01", "5000")["investment_id"]
    ok("investment", "confirm-payment", str(investment), "wire 7")
    ok("asset", "freeze-tokens", "WATER-01", "alice", "2")
    ok("asset", "unfreeze-tokens", "WATER-01", "alice", "2")
    ok("asset", "freeze", "WATER-01", "bob")
    ok("asset", "unfreeze", "WATER-01", "bob")
    ok("transfer", "WATER-01", "alice", "bob", "1")
    ok("transfer", "WATER-01", "bob", "alice", "1", "--forced")
    ok("redeem", "WATER-01", "alice", "1")
    pending = ok("investment", "place", "alice", "WATER-01", "1000")["investment_id"]
    ok("investment", "cancel", str(pending))
    ok("asset", "pause", "WATER-01")
    ok("asset", "unpause", "WATER-01")
    ok("asset", "bind-token", "WATER-01", "31337", "0x" + "c1" * 20, "0x" + "c2" * 20)
    proposal = ok(
        "proposal", "create", "WATER-01", "Expand", "--option", "yes", "--option", "no", "--quorum-bps", "100"
    )["proposal_id"]
    assert ok("proposal", "vote", str(proposal), "alice", "yes")["weight"] == 4
    ok("proposal", "close", str(proposal))
    code, output = ledger(env, "distribution", "declare", "WATER-01", "1000", "--record-position", "1")
    assert (code, "no holders" in output) == (1, True)  # as of position 1: the asset's registration
    distribution = ok("distribution", "declare", "WATER-01", "1000")["distribution_id"]
    paid = ok("distribution", "pay", str(distribution), "--investor-id", "alice")
    assert paid["paid_investor_ids"] == ["alice"]
    code, output = ledger(env, "investor", "kyc", "bob", "revoked", "--expires-at", next_year)
    assert (code, "validation_error" in output) == (2, True)
