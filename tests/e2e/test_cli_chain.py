"""The chain commands of the CLI on a real anvil: deploy, carry out, sync, reconcile, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters import bootstrap
from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.trex import TokenCall
from adapters.cli import app
from ledger.config import Settings
from tests.support import holding, onboard, open_asset

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]
runner = CliRunner()


def ledger(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout + (result.stderr if result.exit_code else "")


def test_deploy_sync_and_reconcile_from_the_command_line(tmp_path: Path, anvil: Anvil) -> None:
    env = {
        "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3",
        "LEDGER_CHAIN_RPC_URL": anvil.url,
        "LEDGER_CHAIN_AGENT_KEY": DEV_KEYS[0],
        "LEDGER_CHAIN_CONFIRMATIONS": "2",
    }
    assert ledger(env, "init")[0] == 0
    config = Settings(database_url=env["LEDGER_DATABASE_URL"])
    ledger_app = bootstrap.build_application(config)
    try:
        asset_id = open_asset(ledger_app)
        code, output = ledger(env, "chain", "deploy", "--asset", asset_id, "--json")
        assert code == 0, output
        deployed = json.loads(output)
        onboard(ledger_app, "alice")
        holding(ledger_app, asset_id, "alice", 9)
    finally:
        ledger_app.close()

    code, output = ledger(env, "reconcile", asset_id)
    assert code == 1 and "invalid_state" in output and "final" in output  # the token is too new
    anvil.mine(3)
    code, output = ledger(env, "reconcile", asset_id, "--json")  # the mint is still in the outbox
    assert code == 0, output
    assert [f["kind"] for f in json.loads(output)["in_flight"]] == ["mint"]

    chain_config = Settings(
        database_url=env["LEDGER_DATABASE_URL"],
        chain_rpc_url=anvil.url,
        chain_agent_key=DEV_KEYS[0],
        chain_confirmations=2,
    )
    chain_app = bootstrap.build_application(chain_config)
    chain = bootstrap.build_chain(chain_app, bootstrap.build_runner(chain_app, chain_config), chain_config)
    assert chain is not None and chain.client is not None and chain.worker is not None
    assert chain.carry_out() == 1
    anvil.mine(3)
    code, output = ledger(env, "chain", "sync", "--json")
    assert code == 0, output
    assert json.loads(output)[0]["asset_id"] == asset_id
    code, output = ledger(env, "reconcile", asset_id, "--json")
    assert (code, json.loads(output)["differences"]) == (0, []), output

    suite = chain.worker.suite(asset_id)
    assert suite.token == deployed["token"]
    alice = chain.app.get_investor("alice").wallets[0]
    chain.client.agent_call(suite, TokenCall("burn", {"user": alice, "amount": 1}))
    anvil.mine(3)
    code, output = ledger(env, "reconcile", asset_id)
    assert code == 1
    assert "quantity_mismatch" in output and "supply_mismatch" in output
    chain_app.close()


def test_chain_commands_need_a_chain(tmp_path: Path) -> None:
    env = {"LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.sqlite3"}
    for args in (("chain", "sync"), ("reconcile", "TOLL-JKT-01"), ("chain", "deploy", "--asset", "X-1")):
        code, output = ledger(env, *args)
        assert code == 2 and "LEDGER_CHAIN_RPC_URL" in output, (args, output)
