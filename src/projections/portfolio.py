"""An investor's portfolio as of any position: per holding and in total, what was invested (at
average cost), what it is worth (the valuation in force), what it paid and owes, and its returns.

Read from the analytics view's tables (`projections.analytics`): the last flow row of each asset
at or before the position is the holding; the flow rows are the dated cash flows. Nothing is
replayed. Money is exact; rates are integer basis points.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import AsyncConnection, AsyncRawCursor
from sqlalchemy import Connection, func, select, text

from projections.analytics import DIRECTION, Pricing, flows
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
    rows = conn.execute(_PORTFOLIO, {"investor_id": investor_id, "position": position})
    return _portfolio_of(rows, as_of)


async def portfolio_view_async(
    conn: AsyncConnection[Any], investor_id: str, as_of: int | None = None
) -> Portfolio:
    """`portfolio_view` on a plain psycopg connection (PostgreSQL), for the API's hot read path."""
    cursor = AsyncRawCursor(conn)
    await cursor.execute(_PORTFOLIO_RAW, (investor_id, LATEST if as_of is None else as_of))
    return _portfolio_of(await cursor.fetchall(), as_of)


@dataclass
class _Scope:
    """The flow rows of one asset (or of the whole portfolio), folded as they come."""

    flows: list[tuple[int, int]]
    steps: list[tuple[int, int]]  # (day, invested from then on)
    dividends: list[tuple[int, int]]  # (day, amount paid)

    def returns(self, day: int, value: int) -> tuple[int | None, int | None]:
        """(dividend yield, XIRR) on `day`, with `value` as the final flow."""
        if day == 0:
            return None, None
        income = sum(amount for d, amount in self.dividends if d > day - YEAR_DAYS)
        yield_bps = trailing_yield_bps(income, capital_days(self.steps, day))
        return yield_bps, xirr_bps([*self.flows, (day, value)])


def _portfolio_of(rows: Iterable[Sequence[Any]], as_of: int | None) -> Portfolio:
    """Sums are made here, in exact integers, not by the database."""
    flow_rows: list[Sequence[Any]] = []
    pricing: dict[str, Pricing] = {}
    known, views_at, day = False, 0, 0
    for row in rows:
        kind = row[0]
        if kind == "f":
            flow_rows.append(row)
        elif kind == "a":
            pricing[row[1]] = Pricing(int(row[3]), int(row[5] if row[6] is None else row[6]))
        elif kind == "i":
            known = True
        elif kind == "t":
            views_at = int(row[2] or 0)
        else:
            day = int(row[3] or 0)
    flow_rows.sort(key=lambda r: int(r[2]))
    last: dict[str, Sequence[Any]] = {}
    scopes: dict[str, _Scope] = {}
    total = _Scope([], [], [])
    invested: dict[str, int] = {}
    for row in flow_rows:
        asset_id, flow_day, flow, cash = row[1], int(row[3]), row[4], int(row[5])
        last[asset_id] = row
        scope = scopes.get(asset_id)
        if scope is None:
            scope = scopes[asset_id] = _Scope([], [], [])
        direction = DIRECTION[flow]
        if direction:
            scope.flows.append((flow_day, direction * cash))
            total.flows.append((flow_day, direction * cash))
        if flow == "dividend":
            scope.dividends.append((flow_day, cash))
            total.dividends.append((flow_day, cash))
        invested[asset_id] = int(row[8])
        scope.steps.append((flow_day, invested[asset_id]))
        total.steps.append((flow_day, sum(invested.values())))
    positions = []
    for asset_id in sorted(last):
        quantity, frozen, cost, paid, pending = map(int, last[asset_id][6:])
        if quantity == 0 and cost == 0 and paid == 0 and pending == 0:
            continue  # an address freeze alone, or a holding sold long ago with nothing owed
        value = pricing[asset_id].worth(quantity)
        yield_bps, xirr = scopes[asset_id].returns(day, value)
        positions.append(
            Position(
                asset_id,
                quantity,
                frozen,
                cost,
                paid,
                pending,
                value,
                value - cost,
                value + paid - cost,
                yield_bps,
                xirr,
            )
        )
    return Portfolio(known, views_at if as_of is None else as_of, positions, _totals(positions, total, day))


def _totals(positions: list[Position], total: _Scope, day: int) -> Totals:
    value = sum(p.value for p in positions)
    invested = sum(p.invested_amount for p in positions)
    paid = sum(p.dividends_paid for p in positions)
    yield_bps, xirr = total.returns(day, value)
    return Totals(
        invested,
        paid,
        sum(p.dividends_pending for p in positions),
        value,
        value - invested,
        value + paid - invested,
        yield_bps,
        xirr,
    )


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


_HISTORY_ASSETS = text(
    """SELECT a.asset_id, a.decimals, a.unit_price FROM rm_assets a
        WHERE a.asset_id IN (SELECT asset_id FROM rm_investor_flows WHERE investor_id = :investor_id)"""
)
_HISTORY_VALUATIONS = text(
    """SELECT asset_id, position, price_per_token, valued_at FROM rm_valuations
        WHERE position <= :position
          AND asset_id IN (SELECT asset_id FROM rm_investor_flows WHERE investor_id = :investor_id)
        ORDER BY position"""
)
_DAYS = text("SELECT day, position FROM rm_analytics_days ORDER BY day")


@dataclass(frozen=True)
class Calendar:
    """The first position of each day: a position's date, and a date's last position."""

    days: list[int]
    positions: list[int]

    @classmethod
    def load(cls, conn: Connection) -> Calendar:
        rows = conn.execute(_DAYS).all()
        return cls([int(r[0]) for r in rows], [int(r[1]) for r in rows])

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


def portfolio_history(
    conn: Connection, investor_id: str, asset_id: str | None, positions: list[int]
) -> list[HistoryPoint]:
    """Value, invested amount and dividends paid (of one asset, or all) at each of the ascending
    `positions`: one sweep over the investor's flow rows and the assets' valuations."""
    head = positions[-1] if positions else 0
    params = {"investor_id": investor_id, "position": head}
    f_ = flows.c
    query = select(f_.asset_id, f_.position, f_.quantity, f_.invested, f_.paid).where(
        f_.investor_id == investor_id, f_.position <= head
    )
    if asset_id is not None:
        query = query.where(f_.asset_id == asset_id)
    flow_rows = conn.execute(query.order_by(f_.position)).all()
    pricing = {r[0]: Pricing(int(r[1]), int(r[2])) for r in conn.execute(_HISTORY_ASSETS, params)}
    valued = conn.execute(_HISTORY_VALUATIONS, params).all()
    calendar = Calendar.load(conn)
    held: dict[str, tuple[int, int, int]] = {}
    points = []
    f = v = 0
    for position in positions:
        while f < len(flow_rows) and int(flow_rows[f][1]) <= position:
            row = flow_rows[f]
            held[row[0]] = (int(row[2]), int(row[3]), int(row[4]))
            f += 1
        while v < len(valued) and int(valued[v][1]) <= position:
            row = valued[v]
            pricing[row[0]].consider(row[3], int(row[1]), int(row[2]))
            v += 1
        day = calendar.day_of(position)
        points.append(
            HistoryPoint(
                position,
                None if day is None else date.fromordinal(day).isoformat(),
                sum(pricing[a].worth(q) for a, (q, _, _) in held.items()),
                sum(i for _, i, _ in held.values()),
                sum(p for _, _, p in held.values()),
            )
        )
    return points


def history_positions(
    conn: Connection,
    investor_id: str,
    start: int | date | None,
    end: int | date | None,
    points: int,
    head: int,
) -> list[int]:
    """The positions of a chart's points: evenly spaced positions from `start` to `end`, or,
    when either is a date, the last position of each of evenly spaced days. Defaults: the
    investor's first flow, and the views' position `head`."""
    first = conn.execute(
        select(func.min(flows.c.position)).where(flows.c.investor_id == investor_id)
    ).scalar()
    first = int(first or head)
    if not isinstance(start, date) and not isinstance(end, date):
        low = first if start is None else start
        high = head if end is None else min(end, head)
        return evenly(low, max(low, high), points)
    calendar = Calendar.load(conn)
    low_day = (
        start.toordinal()
        if isinstance(start, date)
        else calendar.day_of(start if start is not None else first)
    )
    high_day = end.toordinal() if isinstance(end, date) else calendar.day_of(end if end is not None else head)
    if low_day is None or high_day is None:
        return [head]
    return sorted(
        {
            min(head, calendar.last_position_on(d, head))
            for d in evenly(low_day, max(low_day, high_day), points)
        }
    )
