"""`ledger audit`: the verifiable history for auditors: signing keys, signed tree heads, proofs,
and checks that need neither the store nor the network (SPEC 4.7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from adapters import bootstrap
from adapters.chain import anchor
from adapters.chain.rpc import Rpc
from adapters.chain.trex import ChainError, TrexClient
from ledger.errors import LedgerError
from ledger.transparency import (
    TreeHead,
    check,
    dump,
    key_id,
    load_public_key,
    load_signing_key,
    new_signing_key,
    public_hex,
)

audit_cli = typer.Typer(help="Verifiable history: signed tree heads and proofs.", no_args_is_help=True)
key_cli = typer.Typer(help="The Ed25519 key that signs tree heads.", no_args_is_help=True)
proof_cli = typer.Typer(help="Inclusion and consistency proofs, as JSON.", no_args_is_help=True)
audit_cli.add_typer(key_cli, name="key")
anchor_cli = typer.Typer(help="Signed heads anchored on the chain.", no_args_is_help=True)
audit_cli.add_typer(proof_cli, name="proof")
audit_cli.add_typer(anchor_cli, name="anchor")
out = Console()
err = Console(stderr=True)
OutOption = Annotated[Path | None, typer.Option("--out", help="Write the JSON to this file.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _write(value: dict[str, Any], path: Path | None) -> None:
    if path is None:
        out.print_json(dump(value))
    else:
        path.write_text(dump(value) + "\n")
        err.print(f"written to {path}")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise _fail(f"cannot read the {what} {path}: {error}", 2) from None


@key_cli.command("create")
def key_create(path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM).")]) -> None:
    """Make a new signing key (never stored in the database); print its public key and id."""
    try:
        key = new_signing_key(path)
    except FileExistsError:
        raise _fail(f"{path} exists: not overwritten", 2) from None
    public = key.public_key()
    described = {"key_id": key_id(public), "public_key": public_hex(public), "file": str(path)}
    out.print_json(json.dumps(described))


def _signing_key() -> Any:
    config = bootstrap.settings()
    try:
        return load_signing_key(config.audit_key_file, config.audit_key)
    except (LedgerError, OSError, ValueError) as error:
        raise _fail(f"no usable signing key: {error}", 2) from None


@audit_cli.command("sign")
def sign(out_file: OutOption = None) -> None:
    """Extend the Merkle tree to the head of the log and sign it (LEDGER_AUDIT_KEY_FILE)."""
    key = _signing_key()
    ledger = bootstrap.build_application()
    try:
        head = ledger.transparency.sign_head(key, datetime.now(tz=UTC))
    finally:
        ledger.close()
    _write(head.as_dict(), out_file)


@proof_cli.command("inclusion")
def proof_inclusion(
    position: Annotated[int, typer.Option(min=1, help="The event's position.")],
    tree_size: Annotated[int | None, typer.Option(min=1, help="Default: the whole log.")] = None,
    out_file: OutOption = None,
) -> None:
    """The event at a position with its audit path in the tree of `tree_size` events."""
    ledger = bootstrap.build_application()
    try:
        proof = ledger.transparency.inclusion(position, tree_size)
    except LedgerError as error:
        raise _fail(f"{error.code}: {error.detail}") from None
    finally:
        ledger.close()
    _write(proof, out_file)


@proof_cli.command("consistency")
def proof_consistency(
    from_size: Annotated[int, typer.Option("--from", min=0, help="The older tree size.")],
    to_size: Annotated[int | None, typer.Option("--to", min=1, help="Default: the whole log.")] = None,
    from_head: Annotated[
        Path | None, typer.Option(help="The older signed head, carried in the proof.")
    ] = None,
    out_file: OutOption = None,
) -> None:
    """The proof that the tree of `--from` events is a prefix of the tree of `--to`."""
    ledger = bootstrap.build_application()
    try:
        proof = ledger.transparency.consistency(from_size, to_size)
    except LedgerError as error:
        raise _fail(f"{error.code}: {error.detail}") from None
    finally:
        ledger.close()
    if from_head is not None:
        proof["from_head"] = _read_json(from_head, "signed head")
    _write(proof, out_file)


@audit_cli.command("check")
def check_(
    public_key: Annotated[str, typer.Option(help="The signer's public key: 64 hex digits or a PEM file.")],
    head: Annotated[Path, typer.Option(help="A signed tree head (JSON).")],
    proof: Annotated[Path | None, typer.Option(help="An inclusion or consistency proof (JSON).")] = None,
) -> None:
    """Verify a signed head, and a proof against it, with no store and no network; exit 1 if
    it does not verify."""
    try:
        public = load_public_key(public_key)
        signed = TreeHead.from_dict(_read_json(head, "signed head"))
    except (LedgerError, OSError, ValueError) as error:
        raise _fail(f"invalid input: {error}", 2) from None
    result = check(public, signed, _read_json(proof, "proof") if proof is not None else None)
    out.print_json(json.dumps({**result.as_dict(), "tree_size": signed.tree_size, "root": signed.root}))
    if not result.ok:
        raise typer.Exit(1)


def _agent() -> tuple[TrexClient, Rpc]:
    agent = bootstrap.chain_agent(bootstrap.settings())
    if agent is None:
        raise _fail("anchoring needs LEDGER_CHAIN_RPC_URL and LEDGER_CHAIN_AGENT_KEY", 2)
    return agent


@anchor_cli.command("deploy")
def anchor_deploy() -> None:
    """Deploy the anchor contract as the agent; set LEDGER_ANCHOR_ADDRESS and
    LEDGER_ANCHOR_FROM_BLOCK to what it prints."""
    client, _ = _agent()
    try:
        address, block = anchor.deploy(client)
    except ChainError as error:
        raise _fail(f"deployment failed: {error}") from None
    out.print_json(json.dumps({"address": address, "block": block, "topic": anchor.TOPIC}))


@anchor_cli.command("publish")
def anchor_publish() -> None:
    """Anchor the newest head signed by the configured key now (what the worker does after
    each signing), unless a head at least as large is anchored already."""
    key = _signing_key()
    config = bootstrap.settings()
    address = config.anchor_address
    if not address:
        raise _fail("LEDGER_ANCHOR_ADDRESS is not set: run `ledger audit anchor deploy` first", 2)
    client, rpc = _agent()
    ledger = bootstrap.build_application()
    try:
        published = bootstrap.anchor_publisher(client, rpc, address, ledger, key, config).publish_latest()
    except ChainError as error:
        raise _fail(f"anchoring failed: {error}") from None
    finally:
        ledger.close()
    if published is None:
        out.print_json(json.dumps({"anchored": None}))
    else:
        out.print_json(json.dumps({"anchored": published[0].as_dict(), "tx_hash": published[1]}))
