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
