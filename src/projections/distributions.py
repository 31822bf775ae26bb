"""Distributions (dividends, rent, project profit) with each holder's entitlement and payment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from sqlalchemy import BigInteger, Boolean, Column, Connection, String, Table, select

from ledger.domain.distribution import Distribution
from projections.batch import Batch
from projections.schema import Exact, metadata

distributions = Table(
    "rm_distributions",
    metadata,
    Column("distribution_id", String(36), primary_key=True),
    Column("asset_id", String(32), nullable=False, index=True),
    Column("amount", Exact, nullable=False),
    Column("record_position", BigInteger, nullable=False),
    Column("declared_position", BigInteger, nullable=False),
)

entitlements = Table(
    "rm_entitlements",
    metadata,
    Column("distribution_id", String(36), primary_key=True),
    Column("investor_id", String(64), primary_key=True, index=True),
    Column("asset_id", String(32), nullable=False),
    Column("amount", Exact, nullable=False),
    Column("paid", Boolean, nullable=False),
)


class DistributionsView:
    name = "distributions"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.distributions = tables["rm_distributions"]
        self.entitlements = tables["rm_entitlements"]

    def load(self, conn: Connection) -> None:
        """Keeps nothing in memory."""

    def flush(self, batch: Batch) -> None:
        """Every row is written as its event is processed."""

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Distribution.Declared, batch: Batch) -> None:
        distribution_id = str(event.originator_id)
        record = batch.position if event.record_position is None else event.record_position
        batch.insert(
            self.distributions,
            {
                "distribution_id": distribution_id,
                "asset_id": event.asset_id,
                "amount": event.amount,
                "record_position": record,
                "declared_position": batch.position,
            },
        )
        for investor_id, amount in sorted(event.entitlements.items()):
            batch.insert(
                self.entitlements,
                {
                    "distribution_id": distribution_id,
                    "investor_id": investor_id,
                    "asset_id": event.asset_id,
                    "amount": amount,
                    "paid": False,
                },
            )

    @process_event.register
    def _(self, event: Distribution.EntitlementsPaid, batch: Batch) -> None:
        for investor_id in event.investor_ids:
            batch.update(
                self.entitlements,
                {"distribution_id": str(event.originator_id), "investor_id": investor_id},
                {"paid": True},
            )


@dataclass(frozen=True)
class Entitlement:
    investor_id: str
    amount: int
    paid: bool


@dataclass(frozen=True)
class DistributionRecord:
    distribution_id: str
    asset_id: str
    amount: int
    record_position: int
    declared_position: int
    entitlements: list[Entitlement]


def distribution_record(conn: Connection, distribution_id: str) -> DistributionRecord | None:
    row = conn.execute(
        select(distributions).where(distributions.c.distribution_id == distribution_id)
    ).first()
    if row is None:
        return None
    e = entitlements.c
    rows = conn.execute(
        select(e.investor_id, e.amount, e.paid)
        .where(e.distribution_id == distribution_id)
        .order_by(e.investor_id)
    )
    return DistributionRecord(
        row.distribution_id,
        row.asset_id,
        row.amount,
        row.record_position,
        row.declared_position,
        [Entitlement(r.investor_id, r.amount, r.paid) for r in rows],
    )


@dataclass(frozen=True)
class DistributionSummary:
    distribution_id: str
    asset_id: str
    amount: int
    record_position: int
    declared_position: int


def distributions_page(
    conn: Connection, asset_id: str, after: int, limit: int
) -> tuple[list[DistributionSummary], bool]:
    """Up to `limit` distributions of an asset declared after position `after`, in the order
    declared, and whether more follow."""
    d = distributions.c
    rows = conn.execute(
        select(d.distribution_id, d.asset_id, d.amount, d.record_position, d.declared_position)
        .where(d.asset_id == asset_id, d.declared_position > after)
        .order_by(d.declared_position)
        .limit(limit + 1)
    ).all()
    return [DistributionSummary(*r) for r in rows[:limit]], len(rows) > limit
