"""Investors (registration, wallets, KYC) and investments, as the platform's back end shows them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from psycopg import AsyncConnection, AsyncRawCursor
from sqlalchemy import BigInteger, Boolean, Column, Connection, Index, String, Table, select

from ledger.domain.investment import Investment
from ledger.domain.investor import Investor
from projections.batch import Batch
from projections.schema import Exact, UtcDateTime, metadata

investors = Table(
    "rm_investors",
    metadata,
    Column("investor_id", String(64), primary_key=True),
    Column("country", String(2), nullable=False),
    Column("accredited", Boolean, nullable=False),
    Column("kyc_status", String(16), nullable=False),
    Column("kyc_expires_at", UtcDateTime),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("registered_position", BigInteger, nullable=False),
)

wallets = Table(
    "rm_investor_wallets",
    metadata,
    Column("wallet", String(42), primary_key=True),
    Column("investor_id", String(64), nullable=False, index=True),
    Column("active", Boolean, nullable=False),
    Column("added_position", BigInteger, nullable=False),
)

investments = Table(
    "rm_investments",
    metadata,
    Column("investment_id", String(36), primary_key=True),
    Column("investor_id", String(64), nullable=False, index=True),
    Column("asset_id", String(32), nullable=False),
    Column("amount", Exact, nullable=False),
    Column("quantity", Exact, nullable=False),
    Column("accepted_amount", Exact, nullable=False),
    Column("refund_amount", Exact, nullable=False),
    Column("status", String(16), nullable=False),
    Column("payment_ref", String(200)),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("placed_position", BigInteger, nullable=False),
    Column("updated_position", BigInteger, nullable=False),
    Index(None, "asset_id", "placed_position"),  # an asset's investments in the order placed
)


class InvestorsView:
    """Projects investor and investment events."""

    name = "investors"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.investors = tables["rm_investors"]
        self.wallets = tables["rm_investor_wallets"]
        self.investments = tables["rm_investments"]
        self.investor_ids: dict[Any, str] = {}

    def load(self, conn: Connection) -> None:
        self.investor_ids = {
            Investor.create_id(row.investor_id): row.investor_id
            for row in conn.execute(select(self.investors.c.investor_id))
        }

    def flush(self, batch: Batch) -> None:
        """Every row is written as its event is processed."""

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Investor.Registered, batch: Batch) -> None:
        self.investor_ids[event.originator_id] = event.investor_id
        batch.insert(
            self.investors,
            {
                "investor_id": event.investor_id,
                "country": event.country,
                "accredited": event.accredited,
                "kyc_status": "pending",
                "kyc_expires_at": None,
                "registered_at": event.timestamp,
                "registered_position": batch.position,
            },
        )
        self._wallet(batch, event.investor_id, event.wallet)

    def _wallet(self, batch: Batch, investor_id: str, wallet: str) -> None:
        batch.insert(
            self.wallets,
            {"wallet": wallet, "investor_id": investor_id, "active": True, "added_position": batch.position},
        )

    @process_event.register
    def _(self, event: Investor.KycUpdated, batch: Batch) -> None:
        batch.update(
            self.investors,
            {"investor_id": self.investor_ids[event.originator_id]},
            {"kyc_status": event.status, "kyc_expires_at": event.expires_at},
        )

    @process_event.register
    def _(self, event: Investor.WalletAdded, batch: Batch) -> None:
        self._wallet(batch, self.investor_ids[event.originator_id], event.wallet)

    @process_event.register
    def _(self, event: Investor.WalletRecovered, batch: Batch) -> None:
        batch.update(self.wallets, {"wallet": event.lost_wallet}, {"active": False})
        self._wallet(batch, self.investor_ids[event.originator_id], event.new_wallet)

    @process_event.register
    def _(self, event: Investment.Placed, batch: Batch) -> None:
        batch.insert(
            self.investments,
            {
                "investment_id": str(event.originator_id),
                "investor_id": event.investor_id,
                "asset_id": event.asset_id,
                "amount": event.amount,
                "quantity": event.quantity,
                "accepted_amount": event.accepted_amount,
                "refund_amount": event.refund_amount,
                "status": "pending_payment",
                "payment_ref": None,
                "placed_at": event.timestamp,
                "placed_position": batch.position,
                "updated_position": batch.position,
            },
        )

    @process_event.register
    def _(self, event: Investment.PaymentConfirmed, batch: Batch) -> None:
        batch.update(
            self.investments,
            {"investment_id": str(event.originator_id)},
            {"status": "settled", "payment_ref": event.payment_ref, "updated_position": batch.position},
        )

    @process_event.register
    def _(self, event: Investment.Cancelled, batch: Batch) -> None:
        batch.update(
            self.investments,
            {"investment_id": str(event.originator_id)},
            {"status": "cancelled", "updated_position": batch.position},
        )


@dataclass(frozen=True)
class InvestorRecord:
    investor_id: str
    country: str
    accredited: bool
    kyc_status: str
    kyc_expires_at: datetime | None
    registered_at: datetime
    wallets: list[str]
    lost_wallets: list[str]


def investor_record(conn: Connection, investor_id: str) -> InvestorRecord | None:
    row = conn.execute(select(investors).where(investors.c.investor_id == investor_id)).first()
    if row is None:
        return None
    owned = conn.execute(
        select(wallets.c.wallet, wallets.c.active)
        .where(wallets.c.investor_id == investor_id)
        .order_by(wallets.c.added_position, wallets.c.wallet)
    ).all()
    return InvestorRecord(
        row.investor_id,
        row.country,
        row.accredited,
        row.kyc_status,
        row.kyc_expires_at,
        row.registered_at,
        [w.wallet for w in owned if w.active],
        [w.wallet for w in owned if not w.active],
    )


def any_investor_id(conn: Connection) -> str | None:
    """One registered investor, whichever the database finds first (None if there is none)."""
    return conn.execute(select(investors.c.investor_id).limit(1)).scalar()


def investment_record(conn: Connection, investment_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(investments).where(investments.c.investment_id == investment_id)).first()
    return None if row is None else dict(row._mapping)


@dataclass(frozen=True, slots=True)
class InvestorSummary:
    investor_id: str
    country: str
    accredited: bool
    kyc_status: str
    kyc_expires_at: datetime | None
    registered_at: datetime
    registered_position: int


def investors_page(
    conn: Connection, kyc_status: str | None, country: str | None, after: str | None, limit: int
) -> tuple[list[InvestorSummary], bool]:
    """Up to `limit` investors (of one KYC status and country, if given) after investor id
    `after`, in investor id order, and whether more follow."""
    i = investors.c
    query = select(
        i.investor_id,
        i.country,
        i.accredited,
        i.kyc_status,
        i.kyc_expires_at,
        i.registered_at,
        i.registered_position,
    )
    if kyc_status is not None:
        query = query.where(i.kyc_status == kyc_status)
    if country is not None:
        query = query.where(i.country == country)
    if after is not None:
        query = query.where(i.investor_id > after)
    rows = conn.execute(query.order_by(i.investor_id).limit(limit + 1)).all()
    return [InvestorSummary(*r) for r in rows[:limit]], len(rows) > limit


async def investors_page_async(
    conn: AsyncConnection[Any], kyc_status: str | None, country: str | None, after: str | None, limit: int
) -> tuple[list[tuple[Any, ...]], bool, int]:
    """`investors_page` on a plain psycopg connection (PostgreSQL), as tuples of the columns of
    `InvestorSummary`, with the position of the views, all read by one statement (one snapshot)."""
    conditions: list[str] = []
    params: list[str | int] = []
    for column, value in (("kyc_status =", kyc_status), ("country =", country), ("investor_id >", after)):
        if value is not None:
            params.append(value)
            conditions.append(f"{column} ${len(params)}")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    params.append(limit + 1)
    # The position first, as a row of its own: it is there even when the page is empty.
    statement = (
        "SELECT NULL, NULL, NULL, NULL, NULL, NULL, COALESCE(MIN(position), 0) FROM rm_tracking"
        " UNION ALL (SELECT investor_id, country, accredited, kyc_status, kyc_expires_at, registered_at,"
        f" registered_position FROM rm_investors {where} ORDER BY investor_id LIMIT ${len(params)})"
    )
    cursor = AsyncRawCursor(conn)
    # Binary results: a timestamp is loaded from its 8 bytes rather than parsed from its text
    # (the same values; a tenth less time for a page of 500).
    await cursor.execute(statement, params, binary=True)
    rows = await cursor.fetchall()
    return rows[1 : limit + 1], len(rows) > limit + 1, int(rows[0][6])


def investments_page(
    conn: Connection, asset_id: str, status: str | None, after: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` investments in an asset (of one status, if given) placed after position
    `after`, in the order placed, and whether more follow."""
    v = investments.c
    query = select(investments).where(v.asset_id == asset_id, v.placed_position > after)
    if status is not None:
        query = query.where(v.status == status)
    rows = conn.execute(query.order_by(v.placed_position).limit(limit + 1)).all()
    return [dict(r._mapping) for r in rows[:limit]], len(rows) > limit
