"""An investor's portfolio as of any position: per holding and in total, what was invested (at
average cost), what it is worth (the valuation in force), what it paid and owes, and its returns.

Read from the analytics view's tables (`projections.analytics`): the last flow row of each asset
at or before the position is the holding; the flow rows are the dated cash flows. Nothing is
replayed. Money is exact; rates are integer basis points.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncRawCursor
from psycopg.types.numeric import IntLoader
from sqlalchemy import Connection, text

from projections.analytics import DIRECTION, Pricing
from projections.returns import YEAR_DAYS, capital_days, trailing_yield_bps, xirr_bps

LATEST = 2**62  # "as of the views' position": every row of a consistent snapshot


@dataclass(frozen=True)
class Position:
    asset_id: str
    quantity: int
    frozen: int
    invested_amount: int
    dividends_paid: int
    dividends_pending: int
    value: int
    unrealized_gain: int
    total_return: int
    dividend_yield_bps: int | None
    xirr_bps: int | None


@dataclass(frozen=True)
class Totals:
    invested_amount: int
    dividends_paid: int
    dividends_pending: int
    value: int
    unrealized_gain: int
    total_return: int
    dividend_yield_bps: int | None
    xirr_bps: int | None


@dataclass(frozen=True)
class Portfolio:
    investor_known: bool
    as_of_position: int
    positions: list[Position]
    totals: Totals


# One statement, so one round trip and one consistent snapshot without a transaction: the
# investor's flow rows up to the position, the terms and valuation in force of their assets, whether
# they exist, the views' position and the date of the position.
# Columns: kind, asset_id, position, day, flow, cash, quantity, frozen, invested, paid, pending
# ('a' rows: decimals in `day`, unit price in `cash`, the valuation's price in `quantity`).
_STATEMENT = """
    SELECT 'f' AS row_kind, f.asset_id, f.position, f.day, f.kind AS flow, f.cash, f.quantity, f.frozen,
           f.invested, f.paid, f.pending
      FROM rm_investor_flows f WHERE f.investor_id = :investor_id AND f.position <= :position
    UNION ALL
    SELECT 'a', a.asset_id, NULL, a.decimals, NULL, a.unit_price, v.price_per_token, NULL, NULL, NULL, NULL
      FROM rm_assets a
      LEFT JOIN (SELECT asset_id, price_per_token,
                        ROW_NUMBER() OVER (PARTITION BY asset_id ORDER BY valued_at DESC, position DESC) AS rn
                   FROM rm_valuations WHERE position <= :position) v
        ON v.asset_id = a.asset_id AND v.rn = 1
     WHERE a.asset_id IN (SELECT asset_id FROM rm_investor_flows
                           WHERE investor_id = :investor_id AND position <= :position)
    UNION ALL
    SELECT 'i', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM rm_investors WHERE investor_id = :investor_id
    UNION ALL
    SELECT 't', NULL, MIN(position), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM rm_tracking
    UNION ALL
    SELECT 'd', NULL, NULL, MAX(day), NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM rm_analytics_days WHERE position <= :position
"""
_PORTFOLIO = text(_STATEMENT)
# The same statement with server-side parameters, for the API's reads that bypass SQLAlchemy
# (a raw cursor sends it as is: no client-side rewriting of placeholders).
_PORTFOLIO_RAW = _STATEMENT.replace(":investor_id", "$1").replace(":position", "$2")


def portfolio_view(conn: Connection, investor_id: str, as_of: int | None = None) -> Portfolio:
    """Every asset the investor holds, has held, or is owed dividends on, as of `as_of` (the
    views' position if None)."""
    position = LATEST if as_of is None else as_of
    if conn.dialect.name != "postgresql":
        rows = conn.execute(_PORTFOLIO, {"investor_id": investor_id, "position": position})
        # exact integers are zero-padded text on SQLite
        exact = [(*r[:5], *(None if x is None else int(x) for x in r[5:])) for r in rows]
        return _portfolio_of(exact, as_of)
    # On PostgreSQL straight from the driver, NUMERIC read as `int` (as `holdings._fetch` does).
    cursor = psycopg.RawCursor(conn.connection.driver_connection)  # type: ignore[arg-type]
    cursor.adapters.register_loader("numeric", IntLoader)
    with cursor:
        return _portfolio_of(cursor.execute(_PORTFOLIO_RAW, (investor_id, position)).fetchall(), as_of)


async def portfolio_view_async(
    conn: AsyncConnection[Any], investor_id: str, as_of: int | None = None
) -> Portfolio:
    """`portfolio_view` on a plain psycopg connection (PostgreSQL), for the API's hot read path."""
    cursor = AsyncRawCursor(conn)
    cursor.adapters.register_loader("numeric", IntLoader)
    await cursor.execute(_PORTFOLIO_RAW, (investor_id, LATEST if as_of is None else as_of))
    return _portfolio_of(await cursor.fetchall(), as_of)


@dataclass
class _Asset:
    """The flow rows of one asset, in position order, folded as they come."""

    last: Sequence[Any]  # the latest row: the holding as of the position
    flows: list[tuple[int, int]] = field(default_factory=list)  # (day, money to the investor)
    steps: list[tuple[int, int]] = field(default_factory=list)  # (day, invested from then on)
    dividends: list[tuple[int, int]] = field(default_factory=list)  # (day, amount paid)


def _returns(
    flows: list[tuple[int, int]], dividends: list[tuple[int, int]], capital: int, day: int, value: int
) -> tuple[int | None, int | None]:
    """(dividend yield, XIRR) on `day`, with `value` as the final flow."""
    if day == 0:
        return None, None
    income = sum(amount for d, amount in dividends if d > day - YEAR_DAYS)
    return trailing_yield_bps(income, capital), xirr_bps([*flows, (day, value)])


def _portfolio_of(rows: Iterable[Sequence[Any]], as_of: int | None) -> Portfolio:
    """Sums are made here, in exact integers, not by the database (rows come with integers)."""
    held: dict[str, _Asset] = {}
    pricing: dict[str, Pricing] = {}
    known, views_at, day = False, 0, 0
    flow_rows = []
    for row in rows:
        kind = row[0]
        if kind == "f":
            flow_rows.append(row)
        elif kind == "a":
            pricing[row[1]] = Pricing(row[3], row[5] if row[6] is None else row[6])
        elif kind == "i":
            known = True
        elif kind == "t":
            views_at = row[2] or 0
        else:
            day = row[3] or 0
    flow_rows.sort(key=itemgetter(2))  # by position (cheaper here than a sort by the database)
    for row in flow_rows:
        asset = held.get(row[1])
        if asset is None:
            asset = held[row[1]] = _Asset(row)
        asset.last = row
        flow_day, flow, cash = row[3], row[4], row[5]
        direction = DIRECTION[flow]
        if direction:
            asset.flows.append((flow_day, direction * cash))
            if flow == "dividend":
                asset.dividends.append((flow_day, cash))
        asset.steps.append((flow_day, row[8]))
    positions = []
    all_flows: list[tuple[int, int]] = []
    all_dividends: list[tuple[int, int]] = []
    all_capital = 0
    for asset_id in sorted(held):
        asset = held[asset_id]
        all_flows += asset.flows
        all_dividends += asset.dividends
        capital = capital_days(asset.steps, day)
        all_capital += capital  # the capital of each day is the sum of the assets'
        quantity, frozen, cost, paid, pending = asset.last[6:]
        if quantity == 0 and cost == 0 and paid == 0 and pending == 0:
            continue  # an address freeze alone, or a holding sold long ago with nothing owed
        value = pricing[asset_id].worth(quantity)
        yield_bps, xirr = _returns(asset.flows, asset.dividends, capital, day, value)
        gain = value - cost
        positions.append(
            Position(
                asset_id, quantity, frozen, cost, paid, pending, value, gain, gain + paid, yield_bps, xirr
            )
        )
    value = sum(p.value for p in positions)
    invested = sum(p.invested_amount for p in positions)
    paid = sum(p.dividends_paid for p in positions)
    yield_bps, xirr = _returns(all_flows, all_dividends, all_capital, day, value)
    pending = sum(p.dividends_pending for p in positions)
    totals = Totals(
        invested, paid, pending, value, value - invested, value + paid - invested, yield_bps, xirr
    )
    return Portfolio(known, views_at if as_of is None else as_of, positions, totals)


def portfolio(conn: Connection, investor_id: str) -> list[Position]:
    return portfolio_view(conn, investor_id).positions


# ----- history (for charts) -----


@dataclass(frozen=True)
class HistoryPoint:
    position: int
    date: str | None  # YYYY-MM-DD
    value: int
    invested_amount: int
    dividends_paid: int


# One statement (one round trip, one consistent snapshot): the investor's flow rows (of one asset
# or all), their assets' terms and valuations, the calendar of days, whether the investor exists
# and the views' position. Columns: kind, asset_id, position, day, n1, n2, n3, valued_at.
_HISTORY = """
    SELECT 'f' AS row_kind, asset_id, position, CAST(NULL AS INTEGER) AS day, quantity AS n1, invested AS n2,
           paid AS n3, CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS valued_at
      FROM rm_investor_flows WHERE investor_id = :investor_id {asset}
    UNION ALL
    SELECT 'a', asset_id, NULL, decimals, unit_price, NULL, NULL, NULL FROM rm_assets
     WHERE asset_id IN (SELECT asset_id FROM rm_investor_flows WHERE investor_id = :investor_id {asset})
    UNION ALL
    SELECT 'v', asset_id, position, NULL, price_per_token, NULL, NULL, valued_at FROM rm_valuations
     WHERE asset_id IN (SELECT asset_id FROM rm_investor_flows WHERE investor_id = :investor_id {asset})
    UNION ALL
    SELECT 'c', NULL, position, day, NULL, NULL, NULL, NULL FROM rm_analytics_days
    UNION ALL
    SELECT 'i', NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM rm_investors WHERE investor_id = :investor_id
    UNION ALL
    SELECT 't', NULL, MIN(position), NULL, NULL, NULL, NULL, NULL FROM rm_tracking
"""
_HISTORY_TEXT = {
    one: text(_HISTORY.format(asset="AND asset_id = :asset_id" if one else "")) for one in (False, True)
}
_HISTORY_RAW = {
    one: re.sub(r":(\w+)", r"%(\1)s", _HISTORY.format(asset="AND asset_id = :asset_id" if one else ""))
    for one in (False, True)
}


@dataclass(frozen=True)
class Calendar:
    """The first position of each day: a position's date, and a date's last position."""

    days: list[int]
    positions: list[int]

    def day_of(self, position: int) -> int | None:
        index = bisect_right(self.positions, position)
        return self.days[index - 1] if index else None

    def last_position_on(self, day: int, head: int) -> int:
        """The last position whose date is `day` or earlier (`head` if no later day is known)."""
        index = bisect_right(self.days, day)
        return head if index == len(self.days) else self.positions[index] - 1


def evenly(start: int, end: int, points: int) -> list[int]:
    """`points` integers from `start` to `end`, evenly spaced (rounded down), both ends included."""
    if points == 1 or end <= start:
        return [end]
    return [start + (end - start) * k // (points - 1) for k in range(points)]


def history_positions(
    calendar: Calendar, first: int, start: int | date | None, end: int | date | None, points: int, head: int
) -> list[int]:
    """The positions of a chart's points: evenly spaced positions from `start` to `end`, or,
    when either is a date, the last position of each of evenly spaced days. Defaults: the
    investor's first flow `first`, and the views' position `head`."""
    if not isinstance(start, date) and not isinstance(end, date):
        low = min(head, first if start is None else start)
        high = head if end is None else min(end, head)
        return evenly(low, max(low, high), points)
    low_day = (
        start.toordinal() if isinstance(start, date) else calendar.day_of(first if start is None else start)
    )
    high_day = end.toordinal() if isinstance(end, date) else calendar.day_of(head if end is None else end)
    if low_day is None or high_day is None:
        return [head]
    days = evenly(low_day, max(low_day, high_day), points)
    return sorted({min(head, calendar.last_position_on(d, head)) for d in days})


@dataclass(frozen=True)
class History:
    investor_known: bool
    as_of_position: int
    points: list[HistoryPoint]


def portfolio_history(
    conn: Connection,
    investor_id: str,
    asset_id: str | None,
    start: int | date | None,
    end: int | date | None,
    points: int,
) -> History:
    """Value, invested amount and dividends paid (of one asset, or all) at evenly spaced positions
    or dates (see `history_positions`) up to the views' position: one statement, then one sweep
    over the investor's flow rows and their assets' valuations, keeping running totals."""
    params = {"investor_id": investor_id, "asset_id": asset_id}
    if conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.adapters.register_loader("numeric", IntLoader)
            rows = cursor.execute(_HISTORY_RAW[asset_id is not None], params).fetchall()
    else:  # exact integers are zero-padded text on SQLite
        raw = conn.execute(_HISTORY_TEXT[asset_id is not None], params)
        rows = [(*r[:4], *(None if x is None else int(x) for x in r[4:7]), r[7]) for r in raw]
    return _history_of(rows, start, end, points)


async def portfolio_history_async(
    conn: AsyncConnection[Any],
    investor_id: str,
    asset_id: str | None,
    start: int | date | None,
    end: int | date | None,
    points: int,
) -> History:
    """`portfolio_history` on a plain psycopg connection (PostgreSQL), as the portfolio is read."""
    cursor = conn.cursor()
    cursor.adapters.register_loader("numeric", IntLoader)
    await cursor.execute(
        _HISTORY_RAW[asset_id is not None], {"investor_id": investor_id, "asset_id": asset_id}
    )
    return _history_of(await cursor.fetchall(), start, end, points)


def _history_of(
    rows: Iterable[Sequence[Any]], start: int | date | None, end: int | date | None, points: int
) -> History:
    flow_rows, valued, days = [], [], []
    pricing: dict[str, Pricing] = {}
    known, head = False, 0
    for row in rows:
        kind = row[0]
        if kind == "f":
            flow_rows.append((row[2], row[1], row[4], row[5], row[6]))
        elif kind == "v":
            valued.append((row[2], row[1], row[4], row[7]))
        elif kind == "c":
            days.append((row[3], row[2]))
        elif kind == "a":
            pricing[row[1]] = Pricing(row[3], row[4])
        elif kind == "i":
            known = True
        else:
            head = row[2] or 0
    flow_rows.sort()
    valued.sort()
    days.sort()
    calendar = Calendar([d for d, _ in days], [p for _, p in days])
    first = flow_rows[0][0] if flow_rows else head
    positions = history_positions(calendar, first, start, end, points, head)
    return History(known, head, _sweep(positions, flow_rows, valued, pricing, calendar))


def _sweep(
    positions: list[int],
    flow_rows: list[tuple[int, str, int, int, int]],
    valued: list[tuple[int, str, int, Any]],
    pricing: dict[str, Pricing],
    calendar: Calendar,
) -> list[HistoryPoint]:
    held: dict[str, tuple[int, int, int, int]] = {}  # asset -> quantity, worth, invested, paid
    value = invested = paid = 0
    result = []
    f = v = 0
    for position in positions:
        while f < len(flow_rows) and flow_rows[f][0] <= position:
            _, asset, quantity, cost, dividends = flow_rows[f]
            _, old_worth, old_cost, old_paid = held.get(asset, (0, 0, 0, 0))
            worth = pricing[asset].worth(quantity)
            held[asset] = (quantity, worth, cost, dividends)
            value, invested, paid = (
                value + worth - old_worth,
                invested + cost - old_cost,
                paid + dividends - old_paid,
            )
            f += 1
        while v < len(valued) and valued[v][0] <= position:
            at, asset, price, valued_at = valued[v]
            pricing[asset].consider(valued_at, at, price)
            if asset in held:
                quantity, old_worth, cost, dividends = held[asset]
                worth = pricing[asset].worth(quantity)
                held[asset] = (quantity, worth, cost, dividends)
                value += worth - old_worth
            v += 1
        day = calendar.day_of(position)
        when = None if day is None else date.fromordinal(day).isoformat()
        result.append(HistoryPoint(position, when, value, invested, paid))
    return result
