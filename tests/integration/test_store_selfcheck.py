"""The store's self-check: a dropped history table is a failure (never "ok, 0 events"), and a
changed trigger or function definition is found at start-up and by `verify`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.cli import app as cli
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import ConfigurationError
from ledger.selfcheck import TABLES, refusal, store_checks
from ledger.store import EVENTS_TABLE
from tests.integration.test_store_integrity import RawStore, scenario


def drop(raw: RawStore, tables: tuple[str, ...]) -> None:
    for table in tables:
        cascade = " CASCADE" if raw.postgres else ""
        raw.execute(f"DROP TABLE {raw.table(table)}{cascade}")


@pytest.mark.parametrize("dropped", [(EVENTS_TABLE,), TABLES], ids=["events", "all"])
def test_a_dropped_history_is_a_failure_and_is_not_created_afresh(
    store_url: str, dropped: tuple[str, ...]
) -> None:
    app = LedgerApplication(store_env(store_url))
    scenario(app)
    app.close()
    raw = RawStore(store_url)
    drop(raw, dropped)
    with pytest.raises(ConfigurationError, match="dropped outside the ledger"):
        LedgerApplication(store_env(store_url))
    reader = LedgerApplication(store_env(store_url, create_tables=False))
    try:
        result = reader.admin.verify()
        assert not result.ok and result.events_checked == 0
        assert result.reason is not None and EVENTS_TABLE in result.reason
        checks = store_checks(reader.admin.sql.recorder, two_roles=False)
        assert refusal(checks) is not None and EVENTS_TABLE in str(refusal(checks))
    finally:
        reader.close()


def test_a_fresh_store_passes_its_self_check(store_url: str) -> None:
    app = LedgerApplication(store_env(store_url))
    try:
        scenario(app)
        checks = store_checks(app.admin.sql.recorder, two_roles=False)
        assert refusal(checks) is None, checks
        assert {c.name for c in checks} >= {"tables", "triggers", "digest", "privileges"}
    finally:
        app.close()


def test_a_changed_sqlite_trigger_is_found_by_the_self_check_and_serve_refuses_to_start(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    LedgerApplication(store_env(url)).close()
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    conn.execute(f"DROP TRIGGER {EVENTS_TABLE}_refuse_update")
    conn.execute(
        f"CREATE TRIGGER {EVENTS_TABLE}_refuse_update BEFORE UPDATE ON {EVENTS_TABLE} "
        "WHEN 0 BEGIN SELECT RAISE(ABORT, 'never'); END"
    )
    conn.commit()
    conn.close()
    app = LedgerApplication(store_env(url))  # IF NOT EXISTS: the changed trigger stays
    try:
        reason = refusal(store_checks(app.admin.sql.recorder, two_roles=False))
        assert reason is not None and "digest" in reason
    finally:
        app.close()
    env = {**os.environ, "LEDGER_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-c", "from adapters.cli import main; main()", "serve", "--port", "0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "store self-check failed: digest" in " ".join(done.stderr.split())
    # `ledger init` puts the ledger's trigger back before it stores the digest anew.
    assert CliRunner().invoke(cli, ["init"], env={"LEDGER_DATABASE_URL": url}).exit_code == 0
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = ?", (f"{EVENTS_TABLE}_refuse_update",)
    ).fetchone()
    conn.close()
    assert "WHEN 0" not in sql and "append-only" in sql


@pytest.mark.postgres
def test_a_disabled_postgres_trigger_is_found_by_the_self_check(pg_schema_url: str) -> None:
    app = LedgerApplication(store_env(pg_schema_url))
    raw = RawStore(pg_schema_url)
    raw.execute(f"ALTER TABLE {raw.table(EVENTS_TABLE)} DISABLE TRIGGER {EVENTS_TABLE}_refuse_row_change")
    try:
        reason = refusal(store_checks(app.admin.sql.recorder, two_roles=False))
        assert reason is not None and f"disabled: {EVENTS_TABLE}_refuse_row_change" in reason
    finally:
        app.close()
