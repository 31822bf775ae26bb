"""An investor's portfolio: positions, money invested, dividends paid and pending, current value."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncRawCursor
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
# Columns: kind, asset_id, amount, frozen, invested_amount, unit_price, decimals, paid.
_STATEMENT = """
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
_PORTFOLIO = text(_STATEMENT)
# The same statement with a server-side parameter, for the API's reads that bypass SQLAlchemy
# (a raw cursor sends it as is: no client-side rewriting of placeholders).
_PORTFOLIO_RAW = _STATEMENT.replace(":investor_id", "$1")


@dataclass(frozen=True)
class Portfolio:
    investor_known: bool
    as_of_position: int
    positions: list[Position]


def portfolio_view(conn: Connection, investor_id: str) -> Portfolio:
    """Every asset the investor holds, has paid for, or is owed dividends on; value at unit price."""
    return _portfolio_of(conn.execute(_PORTFOLIO, {"investor_id": investor_id}))


async def portfolio_view_async(conn: AsyncConnection[Any], investor_id: str) -> Portfolio:
    """`portfolio_view` on a plain psycopg connection (PostgreSQL), for the API's hot read path."""
    cursor = AsyncRawCursor(conn)
    await cursor.execute(_PORTFOLIO_RAW, (investor_id,))
    return _portfolio_of(await cursor.fetchall())


def _portfolio_of(rows: Iterable[Sequence[Any]]) -> Portfolio:
    """Sums are made here, in exact integers, not by the database."""
    held: dict[str, Sequence[Any]] = {}
    paid: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    known, as_of = False, 0
    for kind, asset_id, amount, *holding, is_paid in rows:
        if kind == "h":
            held[asset_id] = (amount, *holding)  # quantity, frozen, invested, unit price, decimals
        elif kind == "e":
            (paid if is_paid else pending)[asset_id] += int(amount)
        elif kind == "i":
            known = True
        else:
            as_of = int(amount or 0)
    positions = []
    for asset_id in sorted(held.keys() | paid.keys() | pending.keys()):
        quantity, frozen, invested, unit_price, decimals = held.get(asset_id, (0, 0, 0, 0, 0))
        quantity, invested = int(quantity), int(invested)
        dividends = paid.get(asset_id, 0), pending.get(asset_id, 0)
        if quantity == 0 and invested == 0 and dividends == (0, 0):
            continue  # an address freeze alone is not a position
        value = quantity * int(unit_price) // 10 ** int(decimals)
        positions.append(Position(asset_id, quantity, int(frozen), invested, *dividends, value))
    return Portfolio(known, as_of, positions)


def portfolio(conn: Connection, investor_id: str) -> list[Position]:
    return portfolio_view(conn, investor_id).positions
