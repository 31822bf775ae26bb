"""`ledger keys create [--expires-in] | list | revoke | rotate` (SPEC 5, second edition): ids are
validated, secrets are printed once and listed never, each change is an event by `cli:<operator>`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3", "LEDGER_OPERATOR": "olga"}


def ledger(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout + (result.stderr if result.exit_code else "")


def listed(env: dict[str, str]) -> list[dict[str, Any]]:
    code, output = ledger(env, "keys", "list", "--json")
    assert code == 0, output
    found: list[dict[str, Any]] = json.loads(output)
    return found


def history(env: dict[str, str]) -> list[dict[str, Any]]:
    code, output = ledger(env, "history", "--json")
    assert code == 0, output
    found: list[dict[str, Any]] = json.loads(output)
    return found


@pytest.mark.parametrize(
    "args",
    [
        ("--role", "investor", "--investor-id", "bad id!;DROP"),
        ("--role", "investor"),
        ("--role", "superuser"),
        ("--role", "auditor", "--expires-in", "soon"),
        ("--role", "auditor", "--expires-in", "0"),
    ],
)
def test_an_invalid_key_is_refused_with_exit_2_and_nothing_written(
    env: dict[str, str], args: tuple[str]
) -> None:
    assert ledger(env, "init")[0] == 0
    code, output = ledger(env, "keys", "create", *args)
    assert code == 2, output
    assert "validation_error" in output
    assert listed(env) == []
    assert history(env) == []


def test_keys_are_made_listed_rotated_and_revoked_by_the_operator(env: dict[str, str]) -> None:
    code, output = ledger(
        env, "keys", "create", "--role", "investor", "--investor-id", "alice", "--expires-in", "30d"
    )
    assert code == 0, output
    made = json.loads(ledger(env, "keys", "create", "--role", "auditor", "--json")[1])
    token = output.strip()
    key_id = token.split("_")[1]
    assert token.startswith("lk_") and made["key"].startswith("lk_")
    rows = listed(env)
    assert (rows[0]["key_id"], rows[0]["role"], rows[0]["investor_id"]) == (key_id, "investor", "alice")
    assert rows[0]["expires_at"] is not None and rows[0]["revoked_at"] is None
    assert set(rows[0]) == {
        "key_id", "role", "investor_id", "created_at", "last_used_at", "expires_at", "revoked_at",
        "previous_valid_until",
    }
    assert token.split("_", 2)[2] not in json.dumps(rows)
    rotated = json.loads(ledger(env, "keys", "rotate", key_id, "--grace", "10m", "--json")[1])
    assert rotated["key"] != token and rotated["previous_valid_until"] is not None
    code, output = ledger(env, "keys", "revoke", key_id)
    assert code == 0, output
    assert ledger(env, "keys", "revoke", key_id)[0] == 1  # invalid_state: revoked already
    assert ledger(env, "keys", "revoke", "0" * 16)[0] == 1  # not_found
    events = history(env)
    created, rotated_, revoked = "ApiKey.Created", "ApiKey.Rotated", "ApiKey.Revoked"
    assert [e["type"] for e in events] == [created, created, rotated_, revoked]
    assert {e["actor"]["principal"] for e in events} == {"cli:olga"}
    assert all(token.split("_", 2)[2] not in json.dumps(e) for e in events)
