"""`ledger chain deploy`, `chain sync`, `reconcile`: the ERC-3643 chain adapter."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters import bootstrap
from adapters.chain.service import ChainService
from adapters.cli.common import (
    JsonOption,
    KeyOption,
    checked,
    err,
    guard,
    out,
    print_outcome,
)
from ledger.commit import Outcome

chain_cli = typer.Typer(help="The ERC-3643 chain adapter (needs LEDGER_CHAIN_RPC_URL).", no_args_is_help=True)


@contextmanager
def chain_service() -> Iterator[ChainService]:
    config = bootstrap.settings()
    ledger = checked(config)
    try:
        with bootstrap.chain_service(ledger, config) as service:
            if service is None:
                err.print("[red]usage[/red]: LEDGER_CHAIN_RPC_URL is not set: the chain adapter is off")
                raise typer.Exit(2)
            yield service
    finally:
        ledger.close()


@chain_cli.command("deploy")
def chain_deploy(
    asset_id: Annotated[str, typer.Option("--asset", help="The approved asset to tokenize.")],
    as_json: JsonOption = False,
) -> None:
    """Deploy a full T-REX suite for an asset, bind it and start mirroring it."""
    with chain_service() as chain, _progress_spinner(f"deploying T-REX suite for {asset_id}"):
        suite, outcome = guard(lambda: chain.deploy(asset_id))
    print_outcome(Outcome({"asset_id": asset_id, **suite.as_dict()}, outcome.position), as_json)


@chain_cli.command("sync")
def chain_sync(as_json: JsonOption = False) -> None:
    """Mirror every bound token up to the chain head (one cycle)."""
    with chain_service() as chain, _blocks_progress() as progress:
        reports = guard(lambda: chain.sync(progress))
    rows = [dataclasses.asdict(r) for r in reports]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="chain mirror")
    for column in ("asset_id", "head", "final_block", "next_block", "logs", "unrecognised", "retracted"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in (
            "asset_id", "head", "final_block", "next_block", "logs", "unrecognised", "retracted"
        )))
    out.print(table)


def reconcile(asset_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Compare ledger and chain for an asset at its last final block; exit 1 if they differ."""
    with chain_service() as chain:
        _, report = guard(lambda: chain.reconcile(asset_id, key))
    if as_json:
        out.print_json(json.dumps(report))
    else:
        print_reconciliation(report)
    if report["differences"]:
        raise typer.Exit(1)


def print_reconciliation(report: dict[str, Any]) -> None:
    title = (
        f"{report['asset_id']} at block {report['final_block']} "
        f"(ledger position {report['ledger_position']}): {len(report['differences'])} differences, "
        f"{report['holders_checked']} holders checked"
    )
    table = Table(title=title)
    for column in ("kind", "investor", "wallets", "ledger", "chain"):
        table.add_column(column)
    for d in report["differences"]:
        wallets = ", ".join(d["wallets"])
        table.add_row(d["kind"], d["investor_id"] or "", wallets, str(d["ledger"]), str(d["chain"]))
    out.print(table)
    if report["in_flight"]:
        flying = Table(title="in flight (not counted as differences)")
        for column in ("seq", "kind", "state", "position"):
            flying.add_column(column)
        for f in report["in_flight"]:
            flying.add_row(str(f["seq"]), f["kind"], f["state"], str(f["position"]))
        out.print(flying)


@contextmanager
def _blocks_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per mirrored token, advanced as block ranges are recorded."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} blocks"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(asset_id: str, done: int, total: int) -> None:
            if asset_id not in tasks:
                tasks[asset_id] = bar.add_task(f"mirroring {asset_id}", total=total)
            bar.update(tasks[asset_id], completed=done, total=total)

        yield advance


@contextmanager
def _progress_spinner(label: str) -> Iterator[None]:
    with err.status(label):
        yield
