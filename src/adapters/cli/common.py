"""What the `ledger` commands share: the consoles, the `--json` and `--idempotency-key` options,
ledger errors turned into messages and exit codes, the ledger and its self-check, progress bars."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters import bootstrap
from ledger.application import LedgerApplication
from ledger.commit import Outcome
from ledger.config import Settings
from ledger.errors import ConfigurationError, LedgerError, ValidationError
from ledger.transparency import load_signing_key

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
KeyOption = Annotated[str | None, typer.Option("--idempotency-key", help="Replay-safe key for this command.")]


def open_ledger() -> LedgerApplication:
    return bootstrap.build_application()


def guard(action: Callable[[], T]) -> T:
    """Runs an action, turning ledger errors into a message and the contract's exit code."""
    try:
        return action()
    except ValidationError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(2) from None
    except LedgerError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(1) from None


def print_outcome(outcome: Outcome, as_json: bool) -> None:
    body = {**outcome.result, "position": outcome.position}
    if as_json:
        out.print_json(json.dumps(body, default=str))
        return
    table = Table(show_header=False)
    for key, value in body.items():
        table.add_row(key, str(value))
    out.print(table)


def run_command(action: Callable[[LedgerApplication], Outcome], as_json: bool) -> None:
    ledger = open_ledger()
    try:
        print_outcome(guard(lambda: action(ledger)), as_json)
    finally:
        ledger.close()


def checked(config: Settings) -> LedgerApplication:
    """The ledger, past the store's start-up self-check: a process refuses to start (exit 1)
    if it fails."""
    try:
        return bootstrap.checked_application(config)
    except ConfigurationError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(1) from None


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields the function that advances it."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def with_progress(label: str, total: int, lines: Iterator[T]) -> Iterator[T]:
    with progress(label, total) as advance:
        for line in lines:
            yield line
            advance(1)


def configured_audit_key(config: Settings) -> Ed25519PrivateKey | None:
    """The tree-head signing key if one is configured (None if not); exit 2 if it is unusable."""
    if not (config.audit_key_file or config.audit_key):
        return None
    try:
        return load_signing_key(config.audit_key_file, config.audit_key)
    except (LedgerError, OSError, ValueError) as error:
        err.print(f"[red]usage[/red]: the configured signing key is unusable: {error}")
        raise typer.Exit(2) from None
