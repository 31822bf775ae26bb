# ruff: noqa: RUF009  (`term` makes a dataclass field, as `dataclasses.field` does)
"""The inputs of the ledger's commands, each declared once (as `ledger.domain.terms` declares an
asset's terms): the application checks its plain values into one of these, the command's
idempotency payload is its fields, and the HTTP request model (its body: the fields not marked
`path`) and the CLI command's arguments and options are derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.domain import values as v
from ledger.domain.investor import KYC_STATUSES
from ledger.domain.quantity import Amount, Quantity
from ledger.domain.terms import MAX_AMOUNT, Terms, optional, term
from ledger.errors import ValidationError

MAX_CHAIN_ID = 2**53 - 1  # EIP-155 chain ids; shown as a plain JSON number


@dataclass(frozen=True)
class TransferOrder(Terms):
    """Tokens to move from one investor to another (`forced`: by the issuer, ignoring rules
    that protect the sender)."""

    WHAT = "transfer"

    asset_id: str = term(lambda x, _: v.asset_id(x), argument=True)
    from_investor_id: str = term(lambda x, _: v.investor_id(x), argument=True)
    to_investor_id: str = term(lambda x, _: v.investor_id(x), argument=True)
    # its sign is the asset's rule (`invalid_quantity`)
    quantity: Quantity = term(v.integer, argument=True)
    forced: bool = term(v.boolean, default=False, help="Agent's forced transfer.")


@dataclass(frozen=True)
class InvestmentOrder(Terms):
    """Money an investor offers for an asset's tokens."""

    WHAT = "investment"

    investor_id: str = term(lambda x, _: v.investor_id(x), argument=True)
    asset_id: str = term(lambda x, _: v.asset_id(x), argument=True)
    amount: Amount = term(lambda x, n: v.integer(x, n, minimum=0, maximum=MAX_AMOUNT), argument=True)


@dataclass(frozen=True)
class RedemptionOrder(Terms):
    """Tokens an issuer takes back from a holder."""

    WHAT = "redemption"

    asset_id: str = term(lambda x, _: v.asset_id(x), argument=True)
    investor_id: str = term(lambda x, _: v.investor_id(x), argument=True)
    # its sign is the asset's rule (`invalid_quantity`)
    quantity: Quantity = term(v.integer, argument=True)


@dataclass(frozen=True)
class DistributionDeclaration(Terms):
    """Money to share among an asset's holders, as of now or as of a past position."""

    WHAT = "distribution"

    asset_id: str = term(lambda x, _: v.asset_id(x), argument=True)
    amount: Amount = term(lambda x, n: v.integer(x, n, minimum=1, maximum=MAX_AMOUNT), argument=True)
    record_position: int | None = term(optional(lambda x, n: v.integer(x, n, minimum=0)), default=None)


def _uuid(value: object, name: str) -> str:
    return str(v.uuid_text(value, name))


def _option(value: object, name: str) -> str:
    return v.text(value, "option", max_length=100)


def _options(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= 10:
        raise ValidationError("options must be a list of 2 to 10 strings")
    choices = tuple(_option(o, name) for o in value)
    if len(set(choices)) != len(choices):
        raise ValidationError("options must be distinct")
    return choices


def _kyc_status(value: object, name: str) -> str:
    if value not in KYC_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(KYC_STATUSES)}")
    return str(value)


@dataclass(frozen=True)
class TokenFreeze(Terms):
    """Part of a holder's tokens to freeze (or, the same shape, to unfreeze)."""

    WHAT = "freeze"

    asset_id: str = term(lambda x, _: v.asset_id(x), path=True)
    investor_id: str = term(lambda x, _: v.investor_id(x), path=True)
    quantity: Quantity = term(v.integer, argument=True)  # its sign is the asset's rule


@dataclass(frozen=True)
class HolderFreeze(Terms):
    """A holder to freeze on an asset (no transfers from or to them), or to unfreeze."""

    WHAT = "freeze"

    asset_id: str = term(lambda x, _: v.asset_id(x), path=True)
    investor_id: str = term(lambda x, _: v.investor_id(x), path=True)


@dataclass(frozen=True)
class ValuationReport(Terms):
    """What one whole token of an asset was worth on a day (an appraisal, a NAV report)."""

    WHAT = "valuation"

    asset_id: str = term(lambda x, _: v.asset_id(x), path=True)
    # its sign is the asset's rule (`check_valuation`)
    price_per_token: Amount = term(
        lambda x, n: v.integer(x, n, maximum=MAX_AMOUNT), help="Minor units per whole token."
    )
    valued_at: datetime = term(v.timestamp, help="RFC 3339; not in the future, not before registration.")
    source: str = term(v.text, help="Appraiser, NAV report id.")
    method: str | None = term(optional(v.text), default=None)


@dataclass(frozen=True)
class KycDecision(Terms):
    """A KYC decision on an investor; only an approval may expire."""

    WHAT = "KYC decision"

    investor_id: str = term(lambda x, _: v.investor_id(x), path=True)
    status: str = term(_kyc_status, argument=True)
    expires_at: datetime | None = term(optional(v.timestamp), default=None)

    def check(self) -> None:
        if self.expires_at is not None and self.status != "approved":
            raise ValidationError("expires_at only applies to an approved KYC")


@dataclass(frozen=True)
class ProposalSubmission(Terms):
    """A question put to an asset's holders, their votes weighed by their holdings when it opens."""

    WHAT = "proposal"

    asset_id: str = term(lambda x, _: v.asset_id(x), argument=True)
    title: str = term(v.text, argument=True)
    options: tuple[str, ...] = term(_options, help="Repeat for each option.", option="--option")
    quorum_bps: int = term(lambda x, n: v.integer(x, n, minimum=0, maximum=10_000))
    closes_at: datetime | None = term(optional(v.timestamp), default=None)


@dataclass(frozen=True)
class Vote(Terms):
    """An investor's vote on a proposal."""

    WHAT = "vote"

    proposal_id: str = term(_uuid, path=True)
    investor_id: str = term(lambda x, _: v.investor_id(x), argument=True)
    option: str = term(_option, argument=True)


@dataclass(frozen=True)
class ProposalClosing(Terms):
    """A proposal to close, fixing its result."""

    WHAT = "closing"

    proposal_id: str = term(_uuid, path=True)


@dataclass(frozen=True)
class OfferingChange(Terms):
    """An asset's offering to open (investments may be placed) or close."""

    WHAT = "offering"

    asset_id: str = term(lambda x, _: v.asset_id(x), path=True)
    open: bool = term(v.boolean, option="--open/--close")


@dataclass(frozen=True)
class TokenBinding(Terms):
    """The ERC-3643 token an approved asset is bound to, and its identity registry."""

    WHAT = "token"

    asset_id: str = term(lambda x, _: v.asset_id(x), path=True)
    chain_id: int = term(lambda x, n: v.integer(x, n, minimum=1, maximum=MAX_CHAIN_ID), argument=True)
    token_address: str = term(v.wallet, argument=True)
    identity_registry: str = term(v.wallet, argument=True)


@dataclass(frozen=True)
class WalletAddition(Terms):
    """A wallet an investor adds (no other investor may hold it)."""

    WHAT = "wallet"

    investor_id: str = term(lambda x, _: v.investor_id(x), path=True)
    wallet: str = term(v.wallet, argument=True)


@dataclass(frozen=True)
class WalletRecovery(Terms):
    """An investor's lost wallet and the one that replaces it."""

    WHAT = "recovery"

    investor_id: str = term(lambda x, _: v.investor_id(x), path=True)
    lost_wallet: str = term(v.wallet, argument=True)
    new_wallet: str = term(v.wallet, argument=True)


@dataclass(frozen=True)
class PaymentConfirmation(Terms):
    """The payment an investment was paid with (its tokens are then issued)."""

    WHAT = "payment"

    investment_id: str = term(_uuid, path=True)
    payment_ref: str = term(v.text, argument=True)


@dataclass(frozen=True)
class DistributionPayment(Terms):
    """A distribution's entitlements to mark paid: every unpaid one, or one investor's."""

    WHAT = "payment"

    distribution_id: str = term(_uuid, path=True)
    investor_id: str | None = term(optional(lambda x, _: v.investor_id(x)), default=None)


@dataclass(frozen=True)
class AssetStatusChange(Terms):
    """An asset to approve, to pause (no transfers) or to unpause: no input but which one."""

    WHAT = "asset"

    asset_id: str = term(lambda x, _: v.asset_id(x), path=True)


@dataclass(frozen=True)
class InvestmentCancellation(Terms):
    """A pending investment to cancel (its reservation is released)."""

    WHAT = "cancellation"

    investment_id: str = term(_uuid, path=True)
