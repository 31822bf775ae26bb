# ruff: noqa: RUF009  (`term` makes a dataclass field, as `dataclasses.field` does)
"""The inputs of the ledger's busiest commands, each declared once (as `ledger.domain.terms`
declares an asset's terms): the application checks its plain values into one of these, the
command's idempotency payload is its fields, and the HTTP request model is derived from it."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.domain import values as v
from ledger.domain.quantity import Amount, Quantity
from ledger.domain.terms import MAX_AMOUNT, Terms, term


@dataclass(frozen=True)
class TransferOrder(Terms):
    """Tokens to move from one investor to another (`forced`: by the issuer, ignoring rules
    that protect the sender)."""

    WHAT = "transfer"

    asset_id: str = term(lambda x, _: v.asset_id(x))
    from_investor_id: str = term(lambda x, _: v.investor_id(x))
    to_investor_id: str = term(lambda x, _: v.investor_id(x))
    quantity: Quantity = term(v.integer)  # its sign is the asset's rule (`invalid_quantity`)
    forced: bool = term(v.boolean, default=False)


@dataclass(frozen=True)
class InvestmentOrder(Terms):
    """Money an investor offers for an asset's tokens."""

    WHAT = "investment"

    investor_id: str = term(lambda x, _: v.investor_id(x))
    asset_id: str = term(lambda x, _: v.asset_id(x))
    amount: Amount = term(lambda x, n: v.integer(x, n, minimum=0, maximum=MAX_AMOUNT))
