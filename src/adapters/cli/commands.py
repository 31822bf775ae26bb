"""The operator's commands, one per command of the HTTP API: `ledger asset ...`, `investor ...`,
`investment ...`, `distribution ...`, `proposal ...`, `transfer`, `redeem`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import typer

from adapters.cli.common import (
    JsonOption,
    KeyOption,
    run_command,
)
from ledger.domain.commands import (
    AssetStatusChange,
    DistributionDeclaration,
    DistributionPayment,
    HolderFreeze,
    InvestmentCancellation,
    InvestmentOrder,
    KycDecision,
    OfferingChange,
    PaymentConfirmation,
    ProposalClosing,
    ProposalSubmission,
    RedemptionOrder,
    TokenBinding,
    TokenFreeze,
    TransferOrder,
    ValuationReport,
    Vote,
    WalletAddition,
    WalletRecovery,
)
from ledger.domain.terms import AssetTerms, InvestorRegistration, Terms, required

asset_cli = typer.Typer(help="Operator commands on assets.", no_args_is_help=True)


investor_cli = typer.Typer(help="Operator commands on investors.", no_args_is_help=True)


investment_cli = typer.Typer(help="Operator commands on investments.", no_args_is_help=True)


distribution_cli = typer.Typer(help="Operator commands on distributions.", no_args_is_help=True)


proposal_cli = typer.Typer(help="Operator commands on proposals and votes.", no_args_is_help=True)


def options_of(terms: type[Terms]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Gives a command the arguments and options of a typed value's fields (their help, default
    and name as the fields say), before its own; it is called with the fields as `given`."""
    hints = get_type_hints(terms)
    params = []
    for f in dataclasses.fields(terms):  # type: ignore[arg-type]
        meta, hint = f.metadata, hints[f.name]
        if get_origin(hint) is tuple:  # repeated: `--allowed-country ID --allowed-country SG`
            hint = list[get_args(hint)[0]] | None  # type: ignore[misc]
        elif hint is datetime:  # RFC 3339 text, which the ledger reads (typer's formats have no offset)
            hint = str
        elif get_origin(hint) in (Union, UnionType) and datetime in get_args(hint):
            hint = str | None
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
    run_command(lambda ledger: ledger.register_asset(AssetTerms.parse(given), key), as_json)


@asset_cli.command("approve")
@options_of(AssetStatusChange)
def asset_approve(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Approve a draft asset."""
    run_command(lambda ledger: ledger.approve_asset(**given, idempotency_key=key), as_json)


@asset_cli.command("offering")
@options_of(OfferingChange)
def asset_offering(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Open or close the offering."""
    run_command(lambda ledger: ledger.set_offering(given["asset_id"], given["open"], key), as_json)


@asset_cli.command("pause")
@options_of(AssetStatusChange)
def asset_pause(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Pause transfers of an asset."""
    run_command(lambda ledger: ledger.pause_asset(**given, idempotency_key=key), as_json)


@asset_cli.command("unpause")
@options_of(AssetStatusChange)
def asset_unpause(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Resume transfers of an asset."""
    run_command(lambda ledger: ledger.unpause_asset(**given, idempotency_key=key), as_json)


@asset_cli.command("bind-token")
@options_of(TokenBinding)
def asset_bind_token(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Bind an approved asset to its ERC-3643 token (status tokenized)."""
    run_command(lambda ledger: ledger.bind_token(**given, idempotency_key=key), as_json)


@asset_cli.command("freeze-tokens")
@options_of(TokenFreeze)
def asset_freeze_tokens(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Freeze part of a holder's tokens."""
    run_command(lambda ledger: ledger.freeze_tokens(**given, idempotency_key=key), as_json)


@asset_cli.command("unfreeze-tokens")
@options_of(TokenFreeze)
def asset_unfreeze_tokens(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Unfreeze part of a holder's frozen tokens."""
    run_command(lambda ledger: ledger.unfreeze_tokens(**given, idempotency_key=key), as_json)


@asset_cli.command("freeze")
@options_of(HolderFreeze)
def asset_freeze(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Freeze an investor on an asset (no transfers from or to them)."""
    run_command(lambda ledger: ledger.freeze_investor(**given, idempotency_key=key), as_json)


@asset_cli.command("unfreeze")
@options_of(HolderFreeze)
def asset_unfreeze(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Lift an investor's freeze on an asset."""
    run_command(lambda ledger: ledger.unfreeze_investor(**given, idempotency_key=key), as_json)


@asset_cli.command("value")
@options_of(ValuationReport)
def asset_value(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Record a valuation of an asset (a correction is a new valuation)."""
    run_command(lambda ledger: ledger.record_valuation(**given, idempotency_key=key), as_json)


@investor_cli.command("register")
@options_of(InvestorRegistration)
def investor_register(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Register an investor (KYC pending)."""
    registration = InvestorRegistration.parse
    run_command(lambda ledger: ledger.register_investor(registration(given), idempotency_key=key), as_json)


@investor_cli.command("kyc")
@options_of(KycDecision)
def investor_kyc(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Record a KYC decision: pending, approved (optionally until --expires-at), rejected, revoked."""
    run_command(lambda ledger: ledger.update_kyc(**given, idempotency_key=key), as_json)


@investor_cli.command("add-wallet")
@options_of(WalletAddition)
def investor_add_wallet(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Add a wallet to an investor."""
    run_command(lambda ledger: ledger.add_wallet(**given, idempotency_key=key), as_json)


@investor_cli.command("recover")
@options_of(WalletRecovery)
def investor_recover(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Replace a lost wallet with a new one."""
    run_command(lambda ledger: ledger.recover_wallet(**given, idempotency_key=key), as_json)


@investment_cli.command("place")
@options_of(InvestmentOrder)
def investment_place(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Place an investment of AMOUNT minor units (pending payment)."""
    run_command(lambda ledger: ledger.place_investment(**given, idempotency_key=key), as_json)


@investment_cli.command("confirm-payment")
@options_of(PaymentConfirmation)
def investment_confirm(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Confirm the payment of an investment: its tokens are issued."""
    run_command(lambda ledger: ledger.confirm_payment(**given, idempotency_key=key), as_json)


@investment_cli.command("cancel")
@options_of(InvestmentCancellation)
def investment_cancel(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Cancel a pending investment."""
    run_command(lambda ledger: ledger.cancel_investment(**given, idempotency_key=key), as_json)


@options_of(TransferOrder)
def transfer(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Transfer QUANTITY base units between two investors."""
    run_command(lambda ledger: ledger.transfer(**given, idempotency_key=key), as_json)


@options_of(RedemptionOrder)
def redeem(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Redeem (burn) QUANTITY base units of an investor."""
    run_command(lambda ledger: ledger.redeem(**given, idempotency_key=key), as_json)


@distribution_cli.command("declare")
@options_of(DistributionDeclaration)
def distribution_declare(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Declare a distribution of AMOUNT minor units to the holders as of the record position."""
    run_command(lambda ledger: ledger.declare_distribution(**given, idempotency_key=key), as_json)


@distribution_cli.command("pay")
@options_of(DistributionPayment)
def distribution_pay(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Mark entitlements paid: all unpaid ones, or one investor's."""
    run_command(lambda ledger: ledger.pay_distribution(**given, idempotency_key=key), as_json)


@proposal_cli.command("create")
@options_of(ProposalSubmission)
def proposal_create(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Put a proposal to the holders of an asset."""
    run_command(lambda ledger: ledger.create_proposal(**given, idempotency_key=key), as_json)


@proposal_cli.command("vote")
@options_of(Vote)
def proposal_vote(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Cast an investor's vote."""
    run_command(lambda ledger: ledger.cast_vote(**given, idempotency_key=key), as_json)


@proposal_cli.command("close")
@options_of(ProposalClosing)
def proposal_close(given: dict[str, Any], key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Close a proposal and fix its result."""
    run_command(lambda ledger: ledger.close_proposal(**given, idempotency_key=key), as_json)
