"""`ledger`: the operator's command line (typer + rich).

Exit codes: 0 ok, 1 a failure was found (a rejected command, a broken hash
chain), 2 a usage error (bad arguments or invalid input values).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast, get_args, get_origin, get_type_hints

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from adapters import bootstrap
from adapters.api import responses
from adapters.api.common import exact
from adapters.api.keys import KeyAdmin, KeyInfo, duration
from adapters.api.limits import restore_recursion_limit
from adapters.api.routers.audit import event_json
from adapters.audit_cli import audit_cli
from adapters.chain.anchor import Anchor
from adapters.chain.anvil import Anvil, AnvilError
from adapters.chain.artifacts import ArtifactNotFoundError
from adapters.chain.service import ChainService
from adapters.demo import load_demo, run_anchor_demo, run_chain_demo
from adapters.services import Services
from ledger.actor import acting_as, operator
from ledger.application import LedgerApplication
from ledger.commit import Outcome
from ledger.config import Settings
from ledger.domain.terms import AssetTerms, InvestorRegistration, Terms, required
from ledger.errors import ConfigurationError, LedgerError, ValidationError
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
    load_signing_key,
    verify_against,
)
from projections.holdings import CapTable, current_cap_table
from projections.investors import investors
from projections.replay import replay as rebuild
from projections.runner import ProjectionRunner
from projections.schema import snapshot, view_position

app = typer.Typer(help="Register of record for tokenized securities.", no_args_is_help=True)
asset_cli = typer.Typer(help="Operator commands on assets.", no_args_is_help=True)
investor_cli = typer.Typer(help="Operator commands on investors.", no_args_is_help=True)
investment_cli = typer.Typer(help="Operator commands on investments.", no_args_is_help=True)
distribution_cli = typer.Typer(help="Operator commands on distributions.", no_args_is_help=True)
proposal_cli = typer.Typer(help="Operator commands on proposals and votes.", no_args_is_help=True)
app.add_typer(asset_cli, name="asset")
app.add_typer(investor_cli, name="investor")
app.add_typer(investment_cli, name="investment")
app.add_typer(distribution_cli, name="distribution")
app.add_typer(proposal_cli, name="proposal")
app.add_typer(audit_cli, name="audit")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
KeyOption = Annotated[str | None, typer.Option("--idempotency-key", help="Replay-safe key for this command.")]


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


def _ledger() -> LedgerApplication:
    return bootstrap.build_application()


def _guard(action: Callable[[], T]) -> T:
    """Runs an action, turning ledger errors into a message and the contract's exit code."""
    try:
        return action()
    except ValidationError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(2) from None
    except LedgerError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(1) from None


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    body = {**outcome.result, "position": outcome.position}
    if as_json:
        out.print_json(json.dumps(body, default=str))
        return
    table = Table(show_header=False)
    for key, value in body.items():
        table.add_row(key, str(value))
    out.print(table)


def _command(action: Callable[[LedgerApplication], Outcome], as_json: bool) -> None:
    ledger = _ledger()
    try:
        _print_outcome(_guard(lambda: action(ledger)), as_json)
    finally:
        ledger.close()


@app.command()
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
    ledger = _guard(lambda: bootstrap.build_application(owner))
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


def _checked(config: Settings) -> LedgerApplication:
    """The ledger, past the store's start-up self-check: a process refuses to start (exit 1)
    if it fails."""
    try:
        return bootstrap.checked_application(config)
    except ConfigurationError as error:
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        raise typer.Exit(1) from None


@app.command()
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
        with _progress("replaying", head) as advance:
            reached = rebuild(ledger, engine, to=to, progress=advance)
        _grant_runtime_role(ledger, config)
    finally:
        ledger.close()
        engine.dispose()
    if as_json:
        out.print_json(json.dumps({"position": reached}))
    else:
        out.print(f"read models rebuilt to position {reached}")


@app.command()
def project(
    once: Annotated[bool, typer.Option("--once", help="Catch up to the head, then stop.")] = False,
) -> None:
    """Run the projection runner: keep every read model at the head of the event store."""
    config = bootstrap.settings()
    ledger = _checked(config)
    runner = bootstrap.build_runner(ledger, config)
    try:
        if once:
            with _progress("projecting", sum(runner.lag().values()) // max(1, len(runner.views))) as advance:
                runner.catch_up(progress=advance)
            out.print(f"read models at position {min(runner.positions().values())}")
        else:
            out.print("projecting; Ctrl-C or SIGTERM to stop")
            # SIGTERM: the batch in flight is committed, then the loop ends and the process exits 0.
            signal.signal(signal.SIGTERM, lambda signum, frame: runner.stop())
            runner.run_forever(config.database_url)
    except KeyboardInterrupt:
        runner.stop()
    finally:
        ledger.close()
        runner.engine.dispose()


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


@app.command()
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
            anchor, headed = _guard(lambda: anchor_check(ledger))
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
        key = _configured_audit_key(config)
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


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
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


def _with_progress(label: str, total: int, lines: Iterator[T]) -> Iterator[T]:
    with _progress(label, total) as advance:
        for line in lines:
            yield line
            advance(1)


@app.command("export")
def export_(file: Path, as_json: JsonOption = False) -> None:
    """Write the full history as JSON Lines with positions and hashes, then the signed tree
    heads, one `{"kind":"tree_head", ...}` line each."""
    ledger = _ledger()
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


@app.command()
def history(
    after: Annotated[int, typer.Option(help="Events after this position.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The event history: position, time, type, who issued it (actor and request), data."""
    ledger = _ledger()
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


@app.command("import")
def import_(file: Path, as_json: JsonOption = False) -> None:
    """Load an export into an empty store; refuse it if its hash chain does not verify, or if
    a signed tree head it carries does not match its history (the heads are kept too)."""
    if not file.is_file():
        err.print(f"no such file: {file}")
        raise typer.Exit(2)
    with file.open(encoding="utf-8") as lines:
        heads = _guard(lambda: heads_of_export(lines))
    total = sum(1 for _ in file.open(encoding="utf-8")) - len(heads)
    if heads:
        with file.open(encoding="utf-8") as lines:
            _guard(lambda: check_heads(_with_progress("checking signed heads", total, lines), heads))
    ledger = bootstrap.build_application(bootstrap.owner_settings(bootstrap.settings()))  # sets the sequence
    try:
        with file.open(encoding="utf-8") as first, file.open(encoding="utf-8") as second:
            events = (line for line in first if not is_head_line(line))
            again = (line for line in second if not is_head_line(line))
            result = _guard(
                lambda: ledger.admin.import_(
                    _with_progress("verifying", total, events), _with_progress("loading", total, again)
                )
            )
            for head in heads:
                ledger.transparency.store_head(head)
    finally:
        ledger.close()
    _print_verification(result, as_json)


@app.command()
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
        _demo(ledger, config, chain, as_json)
    finally:
        ledger.close()


def _demo(ledger: LedgerApplication, config: Settings, chain: bool, as_json: bool) -> None:
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
                _print_reconciliation(report)
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


chain_cli = typer.Typer(help="The ERC-3643 chain adapter (needs LEDGER_CHAIN_RPC_URL).", no_args_is_help=True)
app.add_typer(chain_cli, name="chain")


@contextmanager
def _chain() -> Iterator[ChainService]:
    config = bootstrap.settings()
    ledger = _checked(config)
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
    with _chain() as chain, _progress_spinner(f"deploying T-REX suite for {asset_id}"):
        suite, outcome = _guard(lambda: chain.deploy(asset_id))
    _print_outcome(Outcome({"asset_id": asset_id, **suite.as_dict()}, outcome.position), as_json)


@chain_cli.command("sync")
def chain_sync(as_json: JsonOption = False) -> None:
    """Mirror every bound token up to the chain head (one cycle)."""
    with _chain() as chain, _blocks_progress() as progress:
        reports = _guard(lambda: chain.sync(progress))
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


@app.command()
def reconcile(asset_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Compare ledger and chain for an asset at its last final block; exit 1 if they differ."""
    with _chain() as chain:
        _, report = _guard(lambda: chain.reconcile(asset_id, key))
    if as_json:
        out.print_json(json.dumps(report))
    else:
        _print_reconciliation(report)
    if report["differences"]:
        raise typer.Exit(1)


def _print_reconciliation(report: dict[str, Any]) -> None:
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


@app.command()
def worker(threads: Annotated[int, typer.Option(help="dramatiq worker threads")] = 1) -> None:
    """Run the background jobs on dramatiq until Ctrl-C: the chain jobs (outbox, mirror,
    periodic reconciliation) when the chain adapter is on, and the periodic signing of tree
    heads when a signing key is configured."""
    config = bootstrap.settings()
    key = _configured_audit_key(config)
    if key is None and not config.chain_rpc_url:
        err.print(
            "[red]usage[/red]: nothing to run: set LEDGER_CHAIN_RPC_URL (chain jobs) "
            "or LEDGER_AUDIT_KEY_FILE (signed tree heads)"
        )
        raise typer.Exit(2)
    with _chain() if config.chain_rpc_url else _ledger_only(config) as services:
        chain = services if isinstance(services, ChainService) else None
        ledger = chain.app if chain is not None else cast(LedgerApplication, services)
        process = bootstrap.build_worker(ledger, chain, key, config, threads)
        process.start()
        where = "Redis" if config.redis_url else "in-process broker"
        out.print(f"worker running {', '.join(process.jobs.actors)} on {where}; Ctrl-C or SIGTERM to stop")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
        finally:
            process.stop()


def _configured_audit_key(config: Settings) -> Ed25519PrivateKey | None:
    """The tree-head signing key if one is configured (None if not); exit 2 if it is unusable."""
    if not (config.audit_key_file or config.audit_key):
        return None
    try:
        return load_signing_key(config.audit_key_file, config.audit_key)
    except (LedgerError, OSError, ValueError) as error:
        err.print(f"[red]usage[/red]: the configured signing key is unusable: {error}")
        raise typer.Exit(2) from None


@contextmanager
def _ledger_only(config: Settings) -> Iterator[LedgerApplication]:
    ledger = _checked(config)
    try:
        yield ledger
    finally:
        ledger.close()


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


keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_cli, name="keys")


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
        lifetime = None if expires_in is None else _guard(lambda: duration(expires_in, "--expires-in"))
        issued = _guard(lambda: admin.create(role, investor_id, lifetime))
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
        info, outcome = _guard(lambda: admin.revoke(key_id))
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
        period = None if grace is None else _guard(lambda: duration(grace, "--grace", zero=True))
        issued = _guard(lambda: admin.rotate(key_id, period))
    _print_key(issued.info, issued.key, issued.position, as_json)


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    demo_keys: Annotated[
        bool, typer.Option(help="Create and print an admin, auditor and investor key.")
    ] = False,
    projector: Annotated[bool, typer.Option(help="Run the projection runner in this process.")] = True,
    workers: Annotated[int, typer.Option(min=1, help="API worker processes (uvicorn).")] = 1,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo while already serving (as `ledger demo`).")
    ] = False,
    demo_chain: Annotated[
        bool, typer.Option("--demo-chain", help="With --demo: run it through a local anvil chain.")
    ] = False,
) -> None:
    """Serve the HTTP API (with the projection runner in-process unless --no-projector).

    With --workers N, N worker processes serve the API (each builds it through
    `bootstrap.build_api`) while this process supervises them and runs the one projection
    runner and the in-process chain jobs. SIGTERM: stop taking requests, let those in flight
    finish (at most GRACE_SECONDS), finish the projection batch in flight, exit 0.

    With --demo the API serves at once while the demo loads in the background (its progress
    printed stage by stage); the console URL and the keys are printed when it is loaded."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    config = bootstrap.settings()
    services = bootstrap.build_services(config)
    base = f"http://{host}:{port}"
    if demo:
        out.print(f"serving at {base} while the demo loads (console and keys follow when it is loaded)")
    elif demo_keys:
        _print_demo_keys(services, base)
    else:
        _print_urls(base)
    with bootstrap.serving(services, config, projector) as jobs:
        if jobs is not None:
            out.print("chain jobs run in this process (LEDGER_REDIS_URL unset)")
        target = bootstrap.api_target(services, config, workers)
        if demo:  # started once the app is built: migrations (alembic) must not run in two threads
            threading.Thread(
                target=_serve_demo, args=(services, config, demo_chain, demo_keys, base), daemon=True
            ).start()
        bootstrap.run_api(target, host, port, workers)


def _print_demo_keys(services: Services, base: str) -> None:
    investor = next(iter(_demo_investor(services)), None)
    for role, investor_id in (("admin", None), ("auditor", None), ("investor", investor)):
        if role != "investor" or investor_id:
            key = KeyAdmin(services.ledger, services.keys).create(role, investor_id).key  # recorded
            suffix = f" (investor {investor_id})" if investor_id else ""
            out.print(f"{role} key{suffix}: [bold]{key}[/bold]", soft_wrap=True)  # never split a key
    _print_urls(base)


def _print_urls(base: str) -> None:
    urls = f"API {base}/v1   docs {base}/docs   health {base}/healthz   metrics {base}/metrics"
    out.print(urls, soft_wrap=True)
    out.print(f"console [bold]{base}/console[/bold] (sign in with an auditor or admin key)", soft_wrap=True)


def _serve_demo(services: Services, config: Settings, chain: bool, keys: bool, base: str) -> None:
    """`serve --demo`: the demo loaded on the served ledger, then the keys and URLs."""
    started = time.monotonic()
    try:
        _demo(services.ledger, config, chain, as_json=False)
        out.print(f"demo loaded in {time.monotonic() - started:.0f} s")
    except typer.Exit:  # already explained (no chain to run it on)
        err.print("[red]the demo did not load[/red]; serving the store as it is")
    except Exception:  # the API keeps serving what was loaded
        err.print_exception()
        err.print("[red]the demo did not finish loading[/red]; serving the store as it is")
    if keys:
        _print_demo_keys(services, base)
    else:
        _print_urls(base)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM outside uvicorn's own handling (while starting, and the signal uvicorn raises
    again once it has shut down): a clean exit through every `finally`, status 0."""
    raise SystemExit(0)


def _demo_investor(services: Services) -> list[str]:
    with snapshot(services.runner.engine) as conn:
        return [row.investor_id for row in conn.execute(select(investors.c.investor_id).limit(1))]


# ----- operator commands, one per command of the HTTP API -----


def options_of(terms: type[Terms]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Gives a command the arguments and options of a typed value's fields (their help, default
    and name as the fields say), before its own; it is called with the fields as `given`."""
    hints = get_type_hints(terms)
    params = []
    for f in dataclasses.fields(terms):  # type: ignore[arg-type]
        meta, hint = f.metadata, hints[f.name]
        if get_origin(hint) is tuple:  # repeated: `--allowed-country ID --allowed-country SG`
            hint = list[get_args(hint)[0]] | None  # type: ignore[misc]
        default = meta["cli_default"]
        if default is dataclasses.MISSING:
            default = inspect.Parameter.empty if required(f) else f.default
        if default == ():
            default = None
        if meta["argument"]:
            info: Any = typer.Argument(help=meta["help"] or None)
            kind: inspect._ParameterKind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        else:
            info = typer.Option(*filter(None, [meta["option"]]), help=meta["help"] or None)
            kind = inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(f.name, kind, annotation=Annotated[hint, info], default=default))

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name != "given"
        ]
        every = [*params, *own]

        @functools.wraps(command)
        def run(**values: Any) -> None:
            command(**{p.name: values.pop(p.name) for p in own}, given=values)

        run.__signature__ = inspect.Signature(every)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in every}
        return run

    return decorate


@asset_cli.command("register")
@options_of(AssetTerms)
def asset_register(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Register an asset (status draft)."""
    _command(lambda ledger: ledger.register_asset(AssetTerms.parse(given), key), as_json)


@asset_cli.command("approve")
def asset_approve(asset_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Approve a draft asset."""
    _command(lambda ledger: ledger.approve_asset(asset_id, key), as_json)


@asset_cli.command("offering")
def asset_offering(
    asset_id: str,
    open_: Annotated[bool, typer.Option("--open/--close")],
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open or close the offering."""
    _command(lambda ledger: ledger.set_offering(asset_id, open_, key), as_json)


@asset_cli.command("pause")
def asset_pause(asset_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Pause transfers of an asset."""
    _command(lambda ledger: ledger.pause_asset(asset_id, key), as_json)


@asset_cli.command("unpause")
def asset_unpause(asset_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Resume transfers of an asset."""
    _command(lambda ledger: ledger.unpause_asset(asset_id, key), as_json)


@asset_cli.command("bind-token")
def asset_bind_token(
    asset_id: str,
    chain_id: int,
    token_address: str,
    identity_registry: str,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bind an approved asset to its ERC-3643 token (status tokenized)."""
    _command(
        lambda ledger: ledger.bind_token(asset_id, chain_id, token_address, identity_registry, key), as_json
    )


@asset_cli.command("freeze-tokens")
def asset_freeze_tokens(
    asset_id: str, investor_id: str, quantity: int, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Freeze part of a holder's tokens."""
    _command(lambda ledger: ledger.freeze_tokens(asset_id, investor_id, quantity, key), as_json)


@asset_cli.command("unfreeze-tokens")
def asset_unfreeze_tokens(
    asset_id: str, investor_id: str, quantity: int, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Unfreeze part of a holder's frozen tokens."""
    _command(lambda ledger: ledger.unfreeze_tokens(asset_id, investor_id, quantity, key), as_json)


@asset_cli.command("freeze")
def asset_freeze(asset_id: str, investor_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Freeze an investor on an asset (no transfers from or to them)."""
    _command(lambda ledger: ledger.freeze_investor(asset_id, investor_id, key), as_json)


@asset_cli.command("unfreeze")
def asset_unfreeze(
    asset_id: str, investor_id: str, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Lift an investor's freeze on an asset."""
    _command(lambda ledger: ledger.unfreeze_investor(asset_id, investor_id, key), as_json)


@asset_cli.command("value")
def asset_value(
    asset_id: str,
    price_per_token: Annotated[int, typer.Option(help="Minor units per whole token.")],
    valued_at: Annotated[str, typer.Option(help="RFC 3339; not in the future, not before registration.")],
    source: Annotated[str, typer.Option(help="Appraiser, NAV report id.")],
    method: Annotated[str | None, typer.Option()] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a valuation of an asset (a correction is a new valuation)."""
    _command(
        lambda ledger: ledger.record_valuation(asset_id, price_per_token, valued_at, source, method, key),
        as_json,
    )


@investor_cli.command("register")
@options_of(InvestorRegistration)
def investor_register(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Register an investor (KYC pending)."""
    registration = InvestorRegistration.parse
    _command(lambda ledger: ledger.register_investor(registration(given), idempotency_key=key), as_json)


@investor_cli.command("kyc")
def investor_kyc(
    investor_id: str,
    status: str,
    expires_at: Annotated[str | None, typer.Option()] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a KYC decision: pending, approved (optionally until --expires-at), rejected, revoked."""
    _command(lambda ledger: ledger.update_kyc(investor_id, status, expires_at, key), as_json)


@investor_cli.command("add-wallet")
def investor_add_wallet(
    investor_id: str, wallet: str, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Add a wallet to an investor."""
    _command(lambda ledger: ledger.add_wallet(investor_id, wallet, key), as_json)


@investor_cli.command("recover")
def investor_recover(
    investor_id: str, lost_wallet: str, new_wallet: str, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Replace a lost wallet with a new one."""
    _command(lambda ledger: ledger.recover_wallet(investor_id, lost_wallet, new_wallet, key), as_json)


@investment_cli.command("place")
def investment_place(
    investor_id: str, asset_id: str, amount: int, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Place an investment of AMOUNT minor units (pending payment)."""
    _command(lambda ledger: ledger.place_investment(investor_id, asset_id, amount, key), as_json)


@investment_cli.command("confirm-payment")
def investment_confirm(
    investment_id: str, payment_ref: str, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Confirm the payment of an investment: its tokens are issued."""
    _command(lambda ledger: ledger.confirm_payment(investment_id, payment_ref, key), as_json)


@investment_cli.command("cancel")
def investment_cancel(investment_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Cancel a pending investment."""
    _command(lambda ledger: ledger.cancel_investment(investment_id, key), as_json)


@app.command()
def transfer(
    asset_id: str,
    from_investor_id: str,
    to_investor_id: str,
    quantity: int,
    forced: Annotated[bool, typer.Option(help="Agent's forced transfer.")] = False,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Transfer QUANTITY base units between two investors."""
    _command(
        lambda ledger: ledger.transfer(asset_id, from_investor_id, to_investor_id, quantity, forced, key),
        as_json,
    )


@app.command()
def redeem(
    asset_id: str, investor_id: str, quantity: int, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Redeem (burn) QUANTITY base units of an investor."""
    _command(lambda ledger: ledger.redeem(asset_id, investor_id, quantity, key), as_json)


@distribution_cli.command("declare")
def distribution_declare(
    asset_id: str,
    amount: int,
    record_position: Annotated[int | None, typer.Option()] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Declare a distribution of AMOUNT minor units to the holders as of the record position."""
    _command(lambda ledger: ledger.declare_distribution(asset_id, amount, record_position, key), as_json)


@distribution_cli.command("pay")
def distribution_pay(
    distribution_id: str,
    investor_id: Annotated[str | None, typer.Option()] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark entitlements paid: all unpaid ones, or one investor's."""
    _command(lambda ledger: ledger.pay_distribution(distribution_id, investor_id, key), as_json)


@proposal_cli.command("create")
def proposal_create(
    asset_id: str,
    title: str,
    option: Annotated[list[str], typer.Option(help="Repeat for each option.")],
    quorum_bps: Annotated[int, typer.Option()],
    closes_at: Annotated[str | None, typer.Option()] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put a proposal to the holders of an asset."""
    _command(
        lambda ledger: ledger.create_proposal(asset_id, title, list(option), quorum_bps, closes_at, key),
        as_json,
    )


@proposal_cli.command("vote")
def proposal_vote(
    proposal_id: str, investor_id: str, option: str, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Cast an investor's vote."""
    _command(lambda ledger: ledger.cast_vote(proposal_id, investor_id, option, key), as_json)


@proposal_cli.command("close")
def proposal_close(proposal_id: str, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Close a proposal and fix its result."""
    _command(lambda ledger: ledger.close_proposal(proposal_id, key), as_json)


def main() -> None:
    restore_recursion_limit()  # the chain libraries' imports raised it (see adapters.api.limits)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigurationError as error:  # e.g. the store's self-check, wherever the API is built
        err.print(f"[red]{error.code}[/red]: {error.detail}")
        sys.exit(1)
