"""An investor's portfolio: positions, money invested, dividends paid and pending, current value."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class Position:
    asset_id: str
    quantity: int
    frozen: int
    invested_amount: int
    dividends_paid: int
    dividends_pending: int
    value: int


# One statement, so one round trip and one consistent snapshot without a transaction:
# the investor's holdings, their entitlements, whether they exist, and the views' position.
_PORTFOLIO = text(
    """
    SELECT 'h' AS kind, h.asset_id, h.quantity AS amount, h.frozen, h.invested_amount, a.unit_price,
           a.decimals, NULL AS paid
      FROM rm_holdings h JOIN rm_assets a ON a.asset_id = h.asset_id
     WHERE h.investor_id = :investor_id
    UNION ALL
    SELECT 'e', e.asset_id, e.amount, NULL, NULL, NULL, NULL, e.paid
      FROM rm_entitlements e WHERE e.investor_id = :investor_id
    UNION ALL
    SELECT 'i', NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM rm_investors WHERE investor_id = :investor_id
    UNION ALL
    SELECT 't', NULL, MIN(position), NULL, NULL, NULL, NULL, NULL FROM rm_tracking
    """
)


@dataclass(frozen=True)
class Portfolio:
    investor_known: bool
    as_of_position: int
    positions: list[Position]


def portfolio_view(conn: Connection, investor_id: str) -> Portfolio:
    """Every asset the investor holds, has paid for, or is owed dividends on; value at unit price.

    Sums are made here, in exact integers, not by the database.
    """
    held: dict[str, Any] = {}
    paid: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    known, as_of = False, 0
    for row in conn.execute(_PORTFOLIO, {"investor_id": investor_id}):
        if row.kind == "h":
            held[row.asset_id] = row
        elif row.kind == "e":
            (paid if row.paid else pending)[row.asset_id] += int(row.amount)
        elif row.kind == "i":
            known = True
        else:
            as_of = int(row.amount or 0)
    positions = []
    for asset_id in sorted(held.keys() | paid.keys() | pending.keys()):
        holding = held.get(asset_id)
        quantity = int(holding.amount) if holding is not None else 0
        invested = int(holding.invested_amount) if holding is not None else 0
        dividends = paid.get(asset_id, 0), pending.get(asset_id, 0)
        if quantity == 0 and invested == 0 and dividends == (0, 0):
            continue  # an address freeze alone is not a position
        value = (
            quantity * int(holding.unit_price) // 10 ** int(holding.decimals) if holding is not None else 0
        )
        frozen = int(holding.frozen) if holding is not None else 0
        positions.append(Position(asset_id, quantity, frozen, invested, *dividends, value))
    return Portfolio(known, as_of, positions)


def portfolio(conn: Connection, investor_id: str) -> list[Position]:
    return portfolio_view(conn, investor_id).positions
