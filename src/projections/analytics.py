"""Valuations and portfolio analytics: what a holding is worth at any position, and what it earned.

Three tables the queries read:
- `rm_valuations`: every valuation of an asset (an immutable event; a correction is a newer one).
  The valuation in force at a position is, of those recorded at or before it, the one with the
  latest `valued_at` (of equal dates, the one recorded last).
- `rm_investor_flows`: one row per event that changed an investor's holding of an asset, with
  the money that moved (`cash`) and the holding right after it: quantity, frozen, invested
  amount at average cost, dividends paid and pending. A portfolio as of any position is the
  last row of each asset at or before it; the cash flows are its rows.
- `rm_analytics_days`: the first position of each day (by event time) this view saw, so that a
  position has a date (the day of the last event at or before it) and a date a position.

Average cost: a settled investment adds its accepted amount (`ceil(quantity * unit_price /
10**decimals)`, SPEC 4.3, from the issued quantity); tokens leaving by transfer or
redemption take `invested * quantity // balance` with them; tokens received by transfer enter
at the valuation in force (unit price if none). For returns, money out of the investor is an
investment or tokens received (at that valuation); money in is a dividend paid, tokens redeemed
or sent away (at that valuation), and the holding's value on the position's date.

The view reads and writes only its own tables: besides those three, `rm_analytics_assets`
(each registered asset's decimals and unit price, for pricing) and `rm_analytics_entitlements`
(the dividend entitlements declared and not yet paid: a payment names only the investors paid).
The holdings it goes on from are the last flow row of each investor and asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from sqlalchemy import BigInteger, Column, Connection, Integer, String, Table, Text, func, select

from ledger.domain.asset import Asset
from ledger.domain.distribution import Distribution
from projections.batch import Batch
from projections.distributions import distributions
from projections.returns import YEAR_DAYS, half_even_bps
from projections.schema import Exact, UtcDateTime, metadata
from projections.unpaid import UnpaidEntitlements, unpaid_table

valuations = Table(
    "rm_valuations",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("price_per_token", Exact, nullable=False),
    Column("valued_at", UtcDateTime, nullable=False),
    Column("source", Text, nullable=False),
    Column("method", Text),
    Column("recorded_at", UtcDateTime, nullable=False),
)

flows = Table(
    "rm_investor_flows",
    metadata,
    Column("investor_id", String(64), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("asset_id", String(32), primary_key=True),
    Column("day", Integer, nullable=False),  # proleptic Gregorian ordinal of the event's date
    Column("kind", String(16), nullable=False),
    Column("cash", Exact, nullable=False),
    Column("quantity", Exact, nullable=False),
    Column("frozen", Exact, nullable=False),
    Column("invested", Exact, nullable=False),
    Column("paid", Exact, nullable=False),
    Column("pending", Exact, nullable=False),
)

days = Table(
    "rm_analytics_days",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("position", BigInteger, nullable=False),
)

# Each registered asset's terms for pricing it (they never change).
analytics_assets = Table(
    "rm_analytics_assets",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("decimals", Integer, nullable=False),
    Column("unit_price", Exact, nullable=False),
)

# The dividend entitlements declared and not yet paid: what a payment pays each investor.
analytics_entitlements = unpaid_table("rm_analytics_entitlements")

# Which way each kind of flow moves money, seen from the investor (0: no money moves).
DIRECTION = {
    "invest": -1,
    "transfer_in": -1,
    "transfer_out": 1,
    "redeem": 1,
    "dividend": 1,
    "freeze": 0,
    "entitled": 0,
}
FLOW_COLUMNS = (
    "investor_id",
    "position",
    "asset_id",
    "day",
    "kind",
    "cash",
    "quantity",
    "frozen",
    "invested",
    "paid",
    "pending",
)


@dataclass
class Holding:
    quantity: int = 0
    frozen: int = 0
    invested: int = 0
    paid: int = 0
    pending: int = 0


@dataclass
class Pricing:
    """An asset's price for valuing it: the valuation in force, else the unit price."""

    decimals: int
    price: int
    unit_price: int = 0  # the offering's (known to the view; a query needs only `price`)
    valued: tuple[datetime, int] | None = None  # valued_at and position of the valuation in force

    def worth(self, quantity: int) -> int:
        scale: int = 10**self.decimals
        return quantity * self.price // scale

    def consider(self, valued_at: datetime, position: int, price: int) -> None:
        """A valuation recorded at `position` (after every one known) is in force from there
        unless it is dated before the one in force."""
        if self.valued is None or valued_at >= self.valued[0]:
            self.valued, self.price = (valued_at, position), price


class AnalyticsView:
    """Projects valuations, and every change of an investor's holdings and dividends, into rows."""

    name = "analytics"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.valuations = tables["rm_valuations"]
        self.flows = tables["rm_investor_flows"]
        self.days = tables["rm_analytics_days"]
        self.assets = tables["rm_analytics_assets"]
        self.entitlements = UnpaidEntitlements(tables["rm_analytics_entitlements"])
        self.asset_ids: dict[Any, str] = {}
        self.pricing: dict[str, Pricing] = {}
        self.holdings: dict[tuple[str, str], Holding] = {}
        self.day = 0
        self._dated = -1  # the position whose day `day` is
        self._rows: list[tuple[Any, ...]] = []

    def load(self, conn: Connection) -> None:
        a = self.assets.c
        self.pricing = {
            r.asset_id: Pricing(r.decimals, r.unit_price, r.unit_price)
            for r in conn.execute(select(a.asset_id, a.decimals, a.unit_price))
        }
        self.asset_ids = {Asset.create_id(asset_id): asset_id for asset_id in self.pricing}
        v = self.valuations.c
        for r in conn.execute(
            select(v.asset_id, v.position, v.price_per_token, v.valued_at).order_by(v.position)
        ):
            self.pricing[r.asset_id].consider(r.valued_at, r.position, r.price_per_token)
        f = self.flows.c
        last = (
            select(f.investor_id, f.asset_id, func.max(f.position).label("position"))
            .group_by(f.investor_id, f.asset_id)
            .subquery()
        )
        rows = conn.execute(
            select(f.investor_id, f.asset_id, f.quantity, f.frozen, f.invested, f.paid, f.pending).join(
                last,
                (last.c.investor_id == f.investor_id)
                & (last.c.asset_id == f.asset_id)
                & (last.c.position == f.position),
            )
        )
        self.holdings = {(r[0], r[1]): Holding(*r[2:]) for r in rows}
        self.entitlements.load(conn)
        self.day = int(conn.execute(select(func.coalesce(func.max(self.days.c.day), 0))).scalar() or 0)
        self._dated = -1
        self._rows = []

    def flush(self, batch: Batch) -> None:
        batch.insert_rows(self.flows, FLOW_COLUMNS, self._rows)
        self._rows = []
        self.entitlements.flush(batch)

    # ----- events -----

    def _today(self, event: Any, batch: Batch) -> int:
        """The day of the event, never before a day already seen (days follow positions);
        worked out once per event (a transfer or a payment makes several rows)."""
        if batch.position != self._dated:
            self._dated = batch.position
            day = event.timestamp.astimezone(UTC).toordinal()
            if day > self.day:
                self.day = day
                batch.insert(self.days, {"day": day, "position": batch.position})
        return self.day

    def _flow(self, event: Any, batch: Batch, investor_id: str, asset_id: str, kind: str, cash: int) -> None:
        h = self.holdings[(investor_id, asset_id)]
        self._rows.append(
            (
                investor_id,
                batch.position,
                asset_id,
                self._today(event, batch),
                kind,
                cash,
                h.quantity,
                h.frozen,
                h.invested,
                h.paid,
                h.pending,
            )
        )

    def _holding(self, investor_id: str, asset_id: str) -> Holding:
        key = (investor_id, asset_id)
        if key not in self.holdings:
            self.holdings[key] = Holding()
        return self.holdings[key]

    def _leave(self, investor_id: str, asset_id: str, quantity: int, unfrozen: int) -> Holding:
        """Tokens leave a holding and take their average cost with them."""
        h = self._holding(investor_id, asset_id)
        cost = h.invested * quantity // h.quantity if h.quantity else 0
        h.quantity -= quantity
        h.frozen -= unfrozen
        h.invested -= cost
        return h

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Asset.Registered, batch: Batch) -> None:
        self.pricing[event.asset_id] = Pricing(event.decimals, event.unit_price, event.unit_price)
        self.asset_ids[event.originator_id] = event.asset_id
        batch.insert(
            self.assets,
            {"asset_id": event.asset_id, "decimals": event.decimals, "unit_price": event.unit_price},
        )

    @process_event.register
    def _(self, event: Asset.Valued, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        self._today(event, batch)
        batch.insert(
            self.valuations,
            {
                "asset_id": asset_id,
                "position": batch.position,
                "price_per_token": event.price_per_token,
                "valued_at": event.valued_at,
                "source": event.source,
                "method": event.method,
                "recorded_at": event.timestamp,
            },
        )
        self.pricing[asset_id].consider(event.valued_at, batch.position, event.price_per_token)

    @process_event.register
    def _(self, event: Asset.TokensIssued, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        # What the investment's tokens cost (SPEC 4.3): the unit price never changes, so the
        # accepted amount follows from the quantity, whatever events came between.
        terms = self.pricing[asset_id]
        scale: int = 10**terms.decimals
        accepted = -(-event.quantity * terms.unit_price // scale)
        h = self._holding(event.investor_id, asset_id)
        h.quantity += event.quantity
        h.invested += accepted
        self._flow(event, batch, event.investor_id, asset_id, "invest", accepted)

    @process_event.register
    def _(self, event: Asset.TokensTransferred, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        worth = self.pricing[asset_id].worth(event.quantity)
        self._leave(event.from_investor_id, asset_id, event.quantity, event.unfrozen)
        self._flow(event, batch, event.from_investor_id, asset_id, "transfer_out", worth)
        h = self._holding(event.to_investor_id, asset_id)
        h.quantity += event.quantity
        h.invested += worth
        self._flow(event, batch, event.to_investor_id, asset_id, "transfer_in", worth)

    @process_event.register
    def _(self, event: Asset.TokensRedeemed, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        worth = self.pricing[asset_id].worth(event.quantity)
        self._leave(event.investor_id, asset_id, event.quantity, event.unfrozen)
        self._flow(event, batch, event.investor_id, asset_id, "redeem", worth)

    @process_event.register
    def _(self, event: Asset.TokensFrozen, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        self._holding(event.investor_id, asset_id).frozen += event.quantity
        self._flow(event, batch, event.investor_id, asset_id, "freeze", 0)

    @process_event.register
    def _(self, event: Asset.TokensUnfrozen, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        self._holding(event.investor_id, asset_id).frozen -= event.quantity
        self._flow(event, batch, event.investor_id, asset_id, "freeze", 0)

    @process_event.register
    def _(self, event: Distribution.Declared, batch: Batch) -> None:
        self.entitlements.declare(event)
        for investor_id, amount in sorted(event.entitlements.items()):
            self._holding(investor_id, event.asset_id).pending += amount
            self._flow(event, batch, investor_id, event.asset_id, "entitled", 0)

    @process_event.register
    def _(self, event: Distribution.EntitlementsPaid, batch: Batch) -> None:
        asset_id, paid = self.entitlements.pay(event)
        for investor_id, amount in paid:
            h = self._holding(investor_id, asset_id)
            h.pending -= amount
            h.paid += amount
            self._flow(event, batch, investor_id, asset_id, "dividend", amount)


# ----- queries -----


@dataclass(frozen=True)
class Valuation:
    asset_id: str
    position: int
    price_per_token: int
    valued_at: datetime
    source: str
    method: str | None
    recorded_at: datetime


def _valuation(row: Any) -> Valuation:
    return Valuation(
        row.asset_id,
        row.position,
        row.price_per_token,
        row.valued_at,
        row.source,
        row.method,
        row.recorded_at,
    )


def valuations_page(conn: Connection, asset_id: str, after: int, limit: int) -> tuple[list[Valuation], bool]:
    """An asset's valuations recorded after position `after`, oldest first, and whether more follow."""
    v = valuations.c
    rows = conn.execute(
        select(valuations)
        .where(v.asset_id == asset_id, v.position > after)
        .order_by(v.position)
        .limit(limit + 1)
    ).all()
    return [_valuation(r) for r in rows[:limit]], len(rows) > limit


def valuation_in_force(conn: Connection, asset_id: str, position: int | None = None) -> Valuation | None:
    """Of the valuations recorded at or before `position` (all if None), the latest dated one."""
    v = valuations.c
    query = select(valuations).where(v.asset_id == asset_id)
    if position is not None:
        query = query.where(v.position <= position)
    row = conn.execute(query.order_by(v.valued_at.desc(), v.position.desc()).limit(1)).first()
    return None if row is None else _valuation(row)


def day_of(conn: Connection, position: int | None = None) -> int:
    """The date (day ordinal) of a position: the day of the last event at or before it; 0 if none."""
    query = select(func.max(days.c.day))
    if position is not None:
        query = query.where(days.c.position <= position)
    return int(conn.execute(query).scalar() or 0)


@dataclass(frozen=True)
class AssetAnalytics:
    latest_valuation: Valuation | None
    market_cap: int
    distribution_yield_bps: int | None


def asset_analytics(
    conn: Connection, asset_id: str, total_supply: int, decimals: int, unit_price: int
) -> AssetAnalytics:
    """What the asset is worth now (supply at the valuation in force, unit price if none) and
    what it distributed over the trailing 365 days, as a share of that."""
    latest = valuation_in_force(conn, asset_id)
    price = unit_price if latest is None else latest.price_per_token
    market_cap = total_supply * price // 10**decimals
    today = day_of(conn)
    start = conn.execute(select(func.min(days.c.position)).where(days.c.day > today - YEAR_DAYS)).scalar()
    d = distributions.c
    paid_out = conn.execute(
        select(d.amount).where(d.asset_id == asset_id, d.declared_position >= int(start or 0))
    ).scalars()
    income = sum(paid_out)
    yield_bps = half_even_bps(income, market_cap) if market_cap > 0 and today else None
    return AssetAnalytics(latest, market_cap, yield_bps)
