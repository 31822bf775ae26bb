"""`ledger init`, `replay`, `verify`, `export`, `import`, `history`: the event store and the
read models as a whole."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.table import Table

from adapters import bootstrap
from adapters.api import responses
from adapters.api.common import exact
from adapters.api.routers.audit import event_json
from adapters.chain.anchor import Anchor
from adapters.cli.common import (
    JsonOption,
    configured_audit_key,
    err,
    guard,
    open_ledger,
    out,
    progress,
    with_progress,
)
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import LedgerError
from ledger.privileges import grant_runtime_role
from ledger.selfcheck import record_digest, refusal, store_checks
from ledger.store import LedgerPostgresRecorder, Verification
from ledger.transparency import (
    HeadVerification,
    TreeHead,
    check_heads,
    head_line,
    heads_of_export,
    is_head_line,
    load_public_key,
    verify_against,
)
from projections.replay import replay as rebuild


def init() -> None:
    """Create the event store (tables, triggers) and migrate the read models; with
    LEDGER_ADMIN_DATABASE_URL, as that owner role, granting the runtime role what it needs."""
    config = bootstrap.settings()
    owner = bootstrap.owner_settings(config)
    for check in bootstrap.failing_before_hardening(owner):
        err.print(
            f"[yellow]warning[/yellow]: before init, {check.name}: {check.detail}. Init puts the "
            "ledger's definitions back (expected after an upgrade that changes them)"
        )
    ledger = guard(lambda: bootstrap.build_application(owner))
    try:
        head = ledger.admin.head_position()
        bootstrap.read_engine(owner).dispose()
        record_digest(ledger.admin.sql.recorder)  # the definitions as this version creates them
        _grant_runtime_role(ledger, config)
    finally:
        ledger.close()
    out.print(f"event store ready at {_redacted(owner.database_url)} (head position {head})")
    out.print(f"read models migrated at {_redacted(owner.read_url)}")


def _grant_runtime_role(owner: LedgerApplication, config: Settings) -> None:
    """Under two roles, grants the runtime role (LEDGER_DATABASE_URL's user) what it needs."""
    if bootstrap.two_roles(config):
        role = bootstrap.runtime_role(config)
        grant_runtime_role(cast(LedgerPostgresRecorder, owner.recorder), role)
        out.print(f"runtime role {role}: SELECT and INSERT on the history, no DDL")


def replay(
    to: Annotated[int | None, typer.Option("--to", help="Rebuild as of this position.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Rebuild every read model from the event store into fresh tables and swap them in."""
    config = bootstrap.settings()
    owner = bootstrap.owner_settings(config)  # builds and swaps in tables: the owner's work
    ledger = bootstrap.build_application(owner)
    engine = bootstrap.read_engine(owner)
    try:
        head = ledger.admin.head_position() if to is None else min(to, ledger.admin.head_position())
        with progress("replaying", head) as advance:
            reached = rebuild(ledger, engine, to=to, progress=advance)
        _grant_runtime_role(ledger, config)
    finally:
        ledger.close()
        engine.dispose()
    if as_json:
        out.print_json(json.dumps({"position": reached}))
    else:
        out.print(f"read models rebuilt to position {reached}")


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _print_verification(result: Verification, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    elif result.ok:
        out.print(
            f"[green]ok[/green]: {result.events_checked} events, "
            f"head {result.head_position} {result.head_hash}"
        )
    else:
        out.print(
            f"[red]FAILED[/red] at position {result.first_invalid_position}: {result.reason} "
            f"({result.events_checked} events verified before it)"
        )


def verify(
    as_json: JsonOption = False,
    against: Annotated[
        Path | None, typer.Option(help="A signed tree head (JSON) the store must still contain.")
    ] = None,
    public_key: Annotated[
        str | None, typer.Option(help="The head signer's public key (hex or PEM file).")
    ] = None,
    anchored: Annotated[
        bool, typer.Option("--anchored", help="Against the latest signed head anchored on the chain.")
    ] = False,
) -> None:
    """Recompute the hash chain and run the store's self-check; exit 1 naming the first
    altered, removed or inserted position, or the failed check.
    With --against, also recompute the Merkle tree of the events the signed head covers;
    with --anchored, the same against the latest head anchored on the chain (read from the
    chain itself, its signature checked with --public-key or the configured signing key's)."""
    if anchored and against is not None:
        err.print("[red]usage[/red]: --against or --anchored, not both")
        raise typer.Exit(2)
    head = _signed_head(against, public_key) if against is not None else None
    config = bootstrap.settings()
    anchor_check = _anchor_check(config, public_key) if anchored else None
    ledger = bootstrap.build_application(config, create_tables=False)  # a dropped table stays missing
    anchor = None
    try:
        result = ledger.admin.verify()
        checks = store_checks(ledger.admin.sql.recorder, bootstrap.two_roles(config))
        headed = verify_against(ledger.admin, head[0], head[1]) if head is not None else None
        if anchor_check is not None:
            anchor, headed = guard(lambda: anchor_check(ledger))
    finally:
        ledger.close()
    if as_json:
        body = result.as_dict()
        if headed is not None:
            body = {"chain": body, "against": headed.as_dict()}
        if anchor_check is not None:
            body["anchor"] = anchor.as_dict() if anchor is not None else None
        out.print_json(json.dumps({**body, "checks": [c.as_dict() for c in checks]}))
    else:
        _print_verification(result, as_json)
        if anchor is not None:
            out.print(f"anchored head: {anchor.head.tree_size} events, block {anchor.block_number}, "
                      f"transaction {anchor.tx_hash}")
        if headed is not None and headed.ok:
            out.print(f"[green]ok[/green]: the store contains the signed tree of {headed.tree_size} events")
        elif headed is not None:
            out.print(
                f"[red]FAILED[/red] against the signed head at position "
                f"{headed.first_invalid_position}: {headed.reason}"
            )
        for check in checks:
            mark = "green]ok" if check.ok else "red]FAILED" if check.enforced else "yellow]warning"
            out.print(f"[{mark}[/] {check.name}: {check.detail}")
    if not result.ok or (headed is not None and not headed.ok) or refusal(checks) is not None:
        raise typer.Exit(1)


def _anchor_check(
    config: Settings, public_key: str | None
) -> Callable[[LedgerApplication], tuple[Anchor | None, HeadVerification]]:
    """What `verify --anchored` runs: needs the chain, the anchor's address and a public key."""
    if not config.chain_rpc_url or not config.anchor_address:
        err.print("[red]usage[/red]: --anchored needs LEDGER_CHAIN_RPC_URL and LEDGER_ANCHOR_ADDRESS")
        raise typer.Exit(2)
    if public_key:
        public = _signed_head_key(public_key)
    else:
        key = configured_audit_key(config)
        if key is None:
            err.print("[red]usage[/red]: --anchored needs --public-key (or the signing key configured)")
            raise typer.Exit(2)
        public = key.public_key()
    return bootstrap.anchored_verifier(config.chain_rpc_url, config.anchor_address, public, config)


def _signed_head_key(public_key: str) -> Ed25519PublicKey:
    try:
        return load_public_key(public_key)
    except (LedgerError, OSError, ValueError) as error:
        err.print(f"[red]invalid input[/red]: {error}")
        raise typer.Exit(2) from None


def _signed_head(path: Path, public_key: str | None) -> tuple[TreeHead, Any]:
    try:
        head = TreeHead.from_dict(json.loads(path.read_text()))
        return head, load_public_key(public_key) if public_key else None
    except (LedgerError, OSError, ValueError) as error:
        err.print(f"[red]invalid input[/red]: {error}")
        raise typer.Exit(2) from None


def export_(file: Path, as_json: JsonOption = False) -> None:
    """Write the full history as JSON Lines with positions and hashes, then the signed tree
    heads, one `{"kind":"tree_head", ...}` line each."""
    ledger = open_ledger()
    try:
        with file.open("w", encoding="utf-8") as handle:
            result = ledger.admin.export(handle)
            handle.writelines(head_line(head) for head in ledger.transparency.all_heads())
    finally:
        ledger.close()
    _print_verification(result, as_json)
    if not result.ok:
        err.print("[yellow]the exported history does not verify; the file shows it as stored[/yellow]")
        raise typer.Exit(1)


def history(
    after: Annotated[int, typer.Option(help="Events after this position.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The event history: position, time, type, who issued it (actor and request), data."""
    ledger = open_ledger()
    try:
        events = [event_json(ledger, r) for r in itertools.islice(ledger.admin.records(after=after), limit)]
    finally:
        ledger.close()
    if as_json:
        shown = exact(events, list[responses.AuditEvent])
        out.print_json(json.dumps(shown))  # as GET /v1/audit/events shows them
        return
    table = Table("position", "occurred at", "type", "actor", "request", "data")
    for event in events:
        actor = event["actor"]
        who = " ".join(str(actor[k]) for k in ("principal", "role", "investor_id") if actor[k])
        data = json.dumps(event["data"], default=str)
        shown = data if len(data) <= 120 else data[:117] + "..."
        when, request = str(event["occurred_at"]), actor["request_id"] or ""
        table.add_row(str(event["position"]), when, event["type"], who, request, shown)
    out.print(table)


def import_(file: Path, as_json: JsonOption = False) -> None:
    """Load an export into an empty store; refuse it if its hash chain does not verify, or if
    a signed tree head it carries does not match its history (the heads are kept too)."""
    if not file.is_file():
        err.print(f"no such file: {file}")
        raise typer.Exit(2)
    with file.open(encoding="utf-8") as lines:
        heads = guard(lambda: heads_of_export(lines))
    total = sum(1 for _ in file.open(encoding="utf-8")) - len(heads)
    if heads:
        with file.open(encoding="utf-8") as lines:
            guard(lambda: check_heads(with_progress("checking signed heads", total, lines), heads))
    ledger = bootstrap.build_application(bootstrap.owner_settings(bootstrap.settings()))  # sets the sequence
    try:
        with file.open(encoding="utf-8") as first, file.open(encoding="utf-8") as second:
            events = (line for line in first if not is_head_line(line))
            again = (line for line in second if not is_head_line(line))
            result = guard(
                lambda: ledger.admin.import_(
                    with_progress("verifying", total, events), with_progress("loading", total, again)
                )
            )
            for head in heads:
                ledger.transparency.store_head(head)
    finally:
        ledger.close()
    _print_verification(result, as_json)
