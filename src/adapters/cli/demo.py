"""`ledger demo` (and `serve --demo`): the demo scenario (`adapters.demo`) loaded, optionally on a
chain, and what it shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import typer
from rich.table import Table

from adapters import bootstrap
from adapters.chain.anvil import Anvil, AnvilError
from adapters.chain.artifacts import ArtifactNotFoundError
from adapters.chain.service import ChainService
from adapters.cli.chain import print_reconciliation
from adapters.cli.common import (
    JsonOption,
    err,
    out,
)
from adapters.demo import load_demo, run_anchor_demo, run_chain_demo
from ledger.application import LedgerApplication
from ledger.config import Settings
from projections.holdings import CapTable, current_cap_table
from projections.runner import ProjectionRunner
from projections.schema import snapshot, view_position


def demo(
    chain: Annotated[
        bool, typer.Option("--chain", help="Run it on an ERC-3643 chain (a local anvil unless configured).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Load a realistic scenario (3 assets, 320 investors), project it, print cap tables and a summary."""
    config = bootstrap.settings()
    ledger = bootstrap.build_application(config)
    try:
        run_demo(ledger, config, chain, as_json)
    finally:
        ledger.close()


def run_demo(ledger: LedgerApplication, config: Settings, chain: bool, as_json: bool) -> None:
    """The demo on `ledger` (`ledger demo`, or `serve --demo` while it serves), with its progress."""
    runner = bootstrap.build_runner(ledger, config)
    try:
        with _demo_chain(ledger, runner, config) if chain else nullcontext() as service:
            summary = load_demo(ledger, err, service)
            reports = run_chain_demo(service, err) if service is not None and summary["fresh"] else []
            anchoring = run_anchor_demo(service, err) if service is not None and summary["fresh"] else None
        runner.catch_up()
        with snapshot(runner.engine) as conn:
            position = view_position(conn)
            tables = [current_cap_table(conn, asset_id, position) for asset_id in summary["assets"]]
        summary["read_models_position"] = position
        if as_json:
            body = {**summary, "reconciliations": reports}
            if anchoring is not None:
                body["anchoring"] = anchoring
            out.print_json(json.dumps(body, default=str))
        else:
            _print_demo(tables, summary)
            for report in reports:
                out.print(f"[bold]reconciliation {report['when']}[/bold]")
                print_reconciliation(report)
            if anchoring is not None:
                _print_anchoring(anchoring)
    finally:
        runner.engine.dispose()


@contextmanager
def _demo_chain(
    ledger: LedgerApplication, runner: ProjectionRunner, config: Settings
) -> Iterator[ChainService]:
    """The configured chain, or a local anvil started from contracts/ for the demo's lifetime."""
    if config.chain_rpc_url:
        service = bootstrap.build_chain(ledger, runner, config)
        assert service is not None
        yield service
        return
    try:
        with err.status("chain: starting a local anvil node..."):
            node = Anvil.start()
    except (ArtifactNotFoundError, AnvilError) as error:
        err.print(f"[red]usage[/red]: no chain for the demo: {error}")
        raise typer.Exit(2) from None
    err.print(f"local anvil chain at {node.url} (stopped when the demo ends)")
    try:
        yield bootstrap.build_local_chain(ledger, runner, config, node.url)
    finally:
        node.stop()


def _print_anchoring(anchoring: dict[str, Any]) -> None:
    passed, copy = anchoring["verify_anchored"], anchoring["truncated_copy"]
    caught = copy["verify_anchored"]
    out.print("[bold]verifiable history on chain[/bold]")
    out.print(
        f"signed tree head of {anchoring['anchored_tree_size']} events (root {anchoring['anchored_root']}, "
        f"key {anchoring['key_id']}) anchored at {anchoring['anchor_address']} in block "
        f"{anchoring['anchor_block']}, transaction {anchoring['anchor_tx']}; "
        f"mirrored: {anchoring['mirrored_anchor_logs']} anchor log"
    )
    mark = "[green]ok[/green]" if passed["ok"] else "[red]FAILED[/red]"
    out.print(f"verify --anchored on the demo store: {mark} ({passed['events_checked']} events checked)")
    out.print(
        f"a scratch copy without its last {copy['events_removed']} events (it keeps "
        f"{copy['events_kept']} of the {anchoring['anchored_tree_size']} anchored): hash chain "
        f"{'ok' if copy['hash_chain_ok'] else 'FAILED'} (a truncated tail still chains), "
        f"verify --anchored: {'ok' if caught['ok'] else '[red]caught[/red]'} at position "
        f"{caught['first_invalid_position']}: {caught['reason']}"
    )


def _print_demo(tables: list[CapTable], summary: dict[str, Any]) -> None:
    for cap_table in tables:
        table = Table(
            title=f"{cap_table.asset_id}: supply {cap_table.total_supply}, {cap_table.holder_count} holders "
            f"(as of position {cap_table.as_of_position})"
        )
        for column in ("investor", "quantity", "frozen", "ownership (bps)"):
            table.add_column(column, justify="right" if column != "investor" else "left")
        for row in cap_table.holders[:8]:
            table.add_row(row.investor_id, str(row.quantity), str(row.frozen), str(row.ownership_bps))
        if cap_table.holder_count > 8:
            table.add_row(f"... {cap_table.holder_count - 8} more", "", "", "")
        out.print(table)
    facts = Table(title="demo summary", show_header=False)
    for key, value in summary.items():
        if key != "assets":
            facts.add_row(key, str(value))
    out.print(facts)
