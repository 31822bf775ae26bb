"""`ledger`: the operator's command line (typer + rich). Its commands only parse arguments and
print; `adapters.bootstrap` wires what they run on.

Exit codes: 0 ok, 1 a failure was found (a rejected command, a broken hash
chain), 2 a usage error (bad arguments or invalid input values).

Where each command lives, by audience (registered here in the order `ledger --help` lists them):
`store` (init, replay, verify, export, import, history), `processes` (serve, project, worker),
`demo`, `chain` (chain deploy and sync, reconcile), `keys`, `audit` (`ledger audit ...`),
`commands` (the operator's commands on assets, investors, investments, distributions and
proposals, transfer, redeem); `common` holds what they share.
"""

from __future__ import annotations

import sys

import typer

from adapters import bootstrap
from adapters.api.limits import restore_recursion_limit
from adapters.cli import chain, commands, demo, keys, processes, store
from adapters.cli.audit import audit_cli
from adapters.cli.commands import asset_register, investor_register
from adapters.cli.common import err
from ledger.actor import acting_as, operator
from ledger.errors import ConfigurationError

__all__ = ["app", "asset_register", "investor_register", "main"]

app = typer.Typer(help="Register of record for tokenized securities.", no_args_is_help=True)


def _register(app: typer.Typer) -> None:
    """Every command and group on `app`, in the order `ledger --help` lists them."""
    for name, command in (
        ("init", store.init),
        ("replay", store.replay),
        ("project", processes.project),
        ("verify", store.verify),
        ("export", store.export_),
        ("history", store.history),
        ("import", store.import_),
        ("demo", demo.demo),
        ("reconcile", chain.reconcile),
        ("worker", processes.worker),
        ("serve", processes.serve),
        ("transfer", commands.transfer),
        ("redeem", commands.redeem),
    ):
        app.command(name)(command)
    for group, name in (
        (commands.asset_cli, "asset"),
        (commands.investor_cli, "investor"),
        (commands.investment_cli, "investment"),
        (commands.distribution_cli, "distribution"),
        (commands.proposal_cli, "proposal"),
        (audit_cli, "audit"),
        (chain.chain_cli, "chain"),
        (keys.keys_cli, "keys"),
    ):
        app.add_typer(group, name=name)


_register(app)


@app.callback()
def _start(ctx: typer.Context) -> None:
    # Every command starts here. A pinned store setting overridden refuses to start.
    try:
        notes = bootstrap.environment_report(bootstrap.settings())
    except ConfigurationError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(2) from None
    for note in notes:
        err.print(f"[yellow]warning[/yellow]: {note}")
    # Every command the CLI issues records `cli:<operator>` as its actor (LEDGER_OPERATOR, else
    # the OS user); an API served from here records each request's key instead.
    ctx.with_resource(acting_as(operator()))


def main() -> None:
    restore_recursion_limit()  # the chain libraries' imports raised it (see adapters.api.limits)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigurationError as error:  # e.g. the store's self-check, wherever the API is built
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        sys.exit(1)
