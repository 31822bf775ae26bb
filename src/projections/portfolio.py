"""An investor's portfolio: positions, money invested, dividends paid and pending, current value."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, select

from projections.distributions import entitlements
from projections.holdings import assets, holdings


@dataclass(frozen=True)
class Position:
    asset_id: str
    quantity: int
    frozen: int
    invested_amount: int
    dividends_paid: int
    dividends_pending: int
    value: int


def portfolio(conn: Connection, investor_id: str) -> list[Position]:
    """Every asset the investor holds, has paid for, or is owed dividends on; value at unit price.

    Sums are made here, in exact integers, not by the database.
    """
    e, h, a = entitlements.c, holdings.c, assets.c
    paid: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    for row in conn.execute(select(e.asset_id, e.amount, e.paid).where(e.investor_id == investor_id)):
        (paid if row.paid else pending)[row.asset_id] += row.amount
    held = {
        row.asset_id: row
        for row in conn.execute(
            select(h.asset_id, h.quantity, h.frozen, h.invested_amount, a.unit_price, a.decimals)
            .join(assets, a.asset_id == h.asset_id)
            .where(h.investor_id == investor_id)
        )
    }
    positions = []
    for asset_id in sorted(held.keys() | paid.keys() | pending.keys()):
        holding = held.get(asset_id)
        quantity = holding.quantity if holding is not None else 0
        invested = holding.invested_amount if holding is not None else 0
        dividends = paid.get(asset_id, 0), pending.get(asset_id, 0)
        if quantity == 0 and invested == 0 and dividends == (0, 0):
            continue  # an address freeze alone is not a position
        value = quantity * holding.unit_price // 10**holding.decimals if holding is not None else 0
        frozen = holding.frozen if holding is not None else 0
        positions.append(Position(asset_id, quantity, frozen, invested, *dividends, value))
    return positions
