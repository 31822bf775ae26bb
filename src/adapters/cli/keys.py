"""`ledger keys`: the API keys."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from adapters import bootstrap
from adapters.api import responses
from adapters.api.common import exact
from adapters.api.keys import KeyInfo, duration
from adapters.cli.common import (
    JsonOption,
    guard,
    out,
)

keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)


def _print_key(info: KeyInfo, key: str | None, position: int | None, as_json: bool) -> None:
    body = {**exact(info, responses.ApiKey), "key": key, "position": position}
    if as_json:
        out.print_json(json.dumps(body))
    elif key is not None:
        out.print(key)
    else:
        out.print(f"key {info.key_id}: revoked at {info.revoked_at}")


@keys_cli.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, auditor or investor")],
    investor_id: Annotated[str | None, typer.Option(help="The investor an investor key acts for.")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Refused after this long: seconds, or 15m, 12h, 30d.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; it is printed once and stored hashed (recorded as an event)."""
    with bootstrap.key_admin(bootstrap.settings()) as admin:
        lifetime = None if expires_in is None else guard(lambda: duration(expires_in, "--expires-in"))
        issued = guard(lambda: admin.create(role, investor_id, lifetime))
    _print_key(issued.info, issued.key, issued.position, as_json)


@keys_cli.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """The API keys: id, role, investor, created, last used, expires, revoked (never a secret)."""
    with bootstrap.key_store(bootstrap.settings()) as keys:
        found = keys.list()
    if as_json:
        out.print_json(json.dumps([exact(info, responses.ApiKey) for info in found]))
        return
    table = Table("key id", "role", "investor", "created", "last used", "expires", "revoked")
    for info in found:
        times = (info.created_at, info.last_used_at, info.expires_at, info.revoked_at)
        shown = ("" if t is None else t.isoformat() for t in times)
        table.add_row(info.key_id, info.role, info.investor_id or "", *shown)
    out.print(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: str, as_json: JsonOption = False) -> None:
    """Revoke a key: every API process refuses it within a second."""
    with bootstrap.key_admin(bootstrap.settings()) as admin:
        info, outcome = guard(lambda: admin.revoke(key_id))
    _print_key(info, None, outcome.position, as_json)


@keys_cli.command("rotate")
def keys_rotate(
    key_id: str,
    grace: Annotated[
        str | None, typer.Option(help="How long the current secret stays valid (default 1h; 0 for none).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new secret for a key (printed once); the current one stays valid for the grace period."""
    with bootstrap.key_admin(bootstrap.settings()) as admin:
        period = None if grace is None else guard(lambda: duration(grace, "--grace", zero=True))
        issued = guard(lambda: admin.rotate(key_id, period))
    _print_key(issued.info, issued.key, issued.position, as_json)
