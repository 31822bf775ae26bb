"""Least privilege (SPEC 2): the event store library's settings are pinned by the ledger.

The library reads its settings from the process environment; one variable
(`POSTGRES_ENABLE_DB_FUNCTIONS=y`) used to switch large batches to its own
`es_insert_events`, which writes no hash links, idempotency records or outbox entries.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import strtobool
from typer.testing import CliRunner

from adapters import bootstrap
from adapters.cli import app as cli
from ledger.application import LedgerApplication
from ledger.config import Settings, store_env
from ledger.environment import BOOLEANS, PINNED, ledger_settings
from ledger.errors import ConfigurationError
from ledger.outbox import OutboxEntry
from ledger.store import IdempotencyRecord, OutboxStore


def conflicting(name: str) -> str:
    """A value other than the one the ledger gives the library."""
    if name in BOOLEANS:
        ours = ledger_settings(LedgerApplication, store_env("sqlite:///:memory:"))
        return "n" if strtobool(ours.get(name, PINNED[name])) else "y"
    return "7" if name.endswith(("LOCK_TIMEOUT", "POOL_SIZE")) else "elsewhere"


VARIABLES = [variable for name in PINNED for variable in (name, f"LEDGER_{name}")]


def names(variable: str) -> str:
    return rf"(?<![A-Z_]){variable}="


@pytest.mark.parametrize("variable", VARIABLES)
def test_a_pinned_store_setting_in_the_environment_refuses_to_start_naming_it(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = variable.removeprefix("LEDGER_")
    monkeypatch.setenv(variable, conflicting(name))
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "ledger.sqlite3"
    with pytest.raises(ConfigurationError, match=names(variable)):
        LedgerApplication(store_env(f"sqlite:///{store}"))
    result = CliRunner().invoke(cli, ["serve"], env={"LEDGER_DATABASE_URL": f"sqlite:///{store}"})
    assert result.exit_code == 2
    assert re.search(names(variable), " ".join(result.stderr.split())), result.stderr
    assert not store.exists()  # refused before the store was opened


@pytest.mark.parametrize("variable", ["POSTGRES_ENABLE_DB_FUNCTIONS", "LEDGER_POSTGRES_ENABLE_DB_FUNCTIONS"])
def test_a_process_started_with_the_library_db_functions_refuses_to_start(
    variable: str, tmp_path: Path
) -> None:
    store = tmp_path / "ledger.sqlite3"
    env = {**os.environ, variable: "y", "LEDGER_DATABASE_URL": f"sqlite:///{store}"}
    done = subprocess.run(
        [sys.executable, "-c", "from adapters.cli import main; main()", "verify"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(names(variable), " ".join(done.stderr.split()))
    assert not store.exists()


def test_a_refusal_does_not_echo_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CIPHER_KEY", "s3cr3t-key")
    monkeypatch.setenv("LEDGER_POSTGRES_PASSWORD", "s3cr3t-password")
    with pytest.raises(ConfigurationError) as refused:
        LedgerApplication(store_env("postgresql://ledger@127.0.0.1:1/none"))
    assert "CIPHER_KEY" in refused.value.detail and "LEDGER_POSTGRES_PASSWORD" in refused.value.detail
    assert "s3cr3t" not in refused.value.detail


def test_a_flag_that_is_no_truth_value_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "maybe")
    with pytest.raises(ConfigurationError, match=names("POSTGRES_ENABLE_DB_FUNCTIONS")):
        LedgerApplication(store_env(f"sqlite:///{tmp_path}/ledger.sqlite3"))


def test_the_ledgers_own_value_of_a_pinned_setting_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "no")
    monkeypatch.setenv("LEDGER_CREATE_TABLE", "yes")
    app = LedgerApplication(store_env(f"sqlite:///{tmp_path}/ledger.sqlite3"))
    app.close()


def test_unknown_ledger_variables_are_reported_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LEDGER_REDIS_ULR=redis://x\n")
    monkeypatch.setenv("LEDGER_DATABSE_URL", "postgresql://elsewhere/db")
    notes = bootstrap.environment_report(Settings(database_url=f"sqlite:///{tmp_path}/l.sqlite3"))
    assert any("LEDGER_DATABSE_URL" in note for note in notes)
    assert any("LEDGER_REDIS_ULR" in note for note in notes)
    assert not any("LEDGER_DATABASE_URL" in note for note in notes)


@pytest.mark.postgres
def test_without_the_pinned_settings_a_100_event_batch_writes_hashes_idempotency_and_outbox(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("POSTGRES_ENABLE_DB_FUNCTIONS", "LEDGER_POSTGRES_ENABLE_DB_FUNCTIONS"):
        monkeypatch.delenv(variable, raising=False)
    app = LedgerApplication(store_env(pg_schema_url))
    try:
        events = [StoredEvent(uuid4(), 1, "tests:Raw", json.dumps({"i": i}).encode()) for i in range(100)]
        key = IdempotencyRecord("key-100", "hash", '{"ok": true}', 99)
        entry = OutboxEntry(0, "ASSET-100", "mint", {"n": 100})
        info: dict[str, Any] = {}
        positions = app.recorder.insert_events(events, idempotency=[key], outbox=[entry], commit_info=info)
        assert positions is not None and len(positions) == 100
        assert app.admin.idempotency_records(["key-100"])["key-100"][2] == positions[-1]
        assert [row.position for row in OutboxStore(app.admin).open_rows()] == [positions[0]]
        verification = app.admin.verify()
        assert verification.ok and verification.events_checked == 100, verification
    finally:
        app.close()
