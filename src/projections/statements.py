"""Statements: every movement of an investor's holding of an asset, with the balance after it.

One row per investor touched by an event: an issuance, a transfer in or out (forced or not), a
redemption, a freeze or unfreeze of tokens or of the address, a dividend entitlement or
payment. Each row has the event's position and time, the counterparty (the other investor of
a transfer), the reference (the investment of an issuance, the distribution of a dividend), the
tokens it concerns, the money of a dividend, and the investor's balance and frozen tokens right
after it. An investor's statement is its rows in position order; an asset's is the rows of all
its holders. Rows are only ever inserted, so a page read at one position never changes later.

The view reads and writes only its own tables: `rm_statements`, whose last row of each
investor and asset holds the balance and frozen tokens the next row starts from;
`rm_statement_assets`, the registered assets (an event names its asset by its aggregate id);
and `rm_statement_entitlements`, the dividend entitlements declared and not yet paid (a
payment names only the investors paid).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from psycopg import AsyncConnection, AsyncRawCursor
from psycopg.types.numeric import IntLoader
from sqlalchemy import BigInteger, Column, Connection, Index, String, Table, func, select, tuple_

from ledger.domain.asset import Asset
from ledger.domain.distribution import Distribution
from projections.batch import Batch
from projections.schema import Exact, UtcDateTime, metadata
from projections.unpaid import UnpaidEntitlements, unpaid_table

statements = Table(
    "rm_statements",
    metadata,
    Column("investor_id", String(64), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("asset_id", String(32), primary_key=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("counterparty", String(64)),
    Column("reference", String(36)),
    Column("quantity", Exact, nullable=False),
    Column("amount", Exact),
    Column("balance", Exact, nullable=False),
    Column("frozen", Exact, nullable=False),
    Index(None, "asset_id", "position", "investor_id"),
)
# The registered assets, so that an asset's events (named by its aggregate id) give its id.
statement_assets = Table(
    "rm_statement_assets",
    metadata,
    Column("asset_id", String(32), primary_key=True),
)
# The dividend entitlements declared and not yet paid: what a payment's rows show.
statement_entitlements = unpaid_table("rm_statement_entitlements")
COLUMNS = (
    "investor_id",
    "position",
    "asset_id",
    "occurred_at",
    "kind",
    "counterparty",
    "reference",
    "quantity",
    "amount",
    "balance",
    "frozen",
)
# How each kind of row moves the balance by its quantity (the others leave it alone).
BALANCE_SIGN = {
    "issuance": 1,
    "transfer_in": 1,
    "forced_transfer_in": 1,
    "transfer_out": -1,
    "forced_transfer_out": -1,
    "redemption": -1,
}
KINDS = (
    *BALANCE_SIGN,
    "tokens_frozen",
    "tokens_unfrozen",
    "address_frozen",
    "address_unfrozen",
    "dividend_entitlement",
    "dividend_payment",
)


class StatementsView:
    """Projects each movement of a holding into a statement row with the balance after it.

    Balances and frozen quantities are kept in memory (loaded from the last row of each
    investor and asset), and so are the registered assets and the unpaid entitlements
    (loaded from the view's own tables), so each event costs no read."""

    name = "statements"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.statements = tables["rm_statements"]
        self.assets = tables["rm_statement_assets"]
        self.entitlements = UnpaidEntitlements(tables["rm_statement_entitlements"])
        self.asset_ids: dict[Any, str] = {}
        self.balances: dict[tuple[str, str], list[int]] = {}  # (asset, investor) -> [quantity, frozen]
        self._rows: list[tuple[Any, ...]] = []

    def load(self, conn: Connection) -> None:
        self.asset_ids = {
            Asset.create_id(asset_id): asset_id
            for asset_id in conn.execute(select(self.assets.c.asset_id)).scalars()
        }
        s = self.statements.c
        last = (
            select(s.investor_id, s.asset_id, func.max(s.position).label("position"))
            .group_by(s.investor_id, s.asset_id)
            .subquery()
        )
        rows = conn.execute(
            select(s.asset_id, s.investor_id, s.balance, s.frozen).join(
                last,
                (last.c.investor_id == s.investor_id)
                & (last.c.asset_id == s.asset_id)
                & (last.c.position == s.position),
            )
        )
        self.balances = {(r[0], r[1]): [r[2], r[3]] for r in rows}
        self.entitlements.load(conn)
        self._rows = []

    def flush(self, batch: Batch) -> None:
        batch.insert_rows(self.statements, COLUMNS, self._rows)
        self._rows = []
        self.entitlements.flush(batch)

    def _row(
        self,
        event: Any,
        batch: Batch,
        asset_id: str,
        investor_id: str,
        kind: str,
        quantity: int = 0,
        frozen: int = 0,
        *,
        counterparty: str | None = None,
        reference: str | None = None,
        amount: int | None = None,
    ) -> None:
        """Moves the holding by `quantity` (signed by the kind) and `frozen`, then writes its row."""
        key = (asset_id, investor_id)
        holding = self.balances.get(key)
        if holding is None:
            holding = self.balances[key] = [0, 0]
        holding[0] += BALANCE_SIGN.get(kind, 0) * quantity
        holding[1] += frozen
        self._rows.append(
            (
                investor_id,
                batch.position,
                asset_id,
                event.timestamp,
                kind,
                counterparty,
                reference,
                quantity,
                amount,
                holding[0],
                holding[1],
            )
        )

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events that move no holding only advance the view's position."""

    @process_event.register
    def _(self, event: Asset.Registered, batch: Batch) -> None:
        self.asset_ids[event.originator_id] = event.asset_id
        batch.insert(self.assets, {"asset_id": event.asset_id})

    @process_event.register
    def _(self, event: Asset.TokensIssued, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        reference = str(event.investment_id)
        self._row(event, batch, asset_id, event.investor_id, "issuance", event.quantity, reference=reference)

    @process_event.register
    def _(self, event: Asset.TokensTransferred, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        prefix = "forced_" if event.forced else ""
        sender, receiver = event.from_investor_id, event.to_investor_id
        self._row(
            event,
            batch,
            asset_id,
            sender,
            f"{prefix}transfer_out",
            event.quantity,
            -event.unfrozen,
            counterparty=receiver,
        )
        self._row(
            event, batch, asset_id, receiver, f"{prefix}transfer_in", event.quantity, counterparty=sender
        )

    @process_event.register
    def _(self, event: Asset.TokensRedeemed, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        self._row(event, batch, asset_id, event.investor_id, "redemption", event.quantity, -event.unfrozen)

    @process_event.register
    def _(self, event: Asset.TokensFrozen, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        self._row(event, batch, asset_id, event.investor_id, "tokens_frozen", event.quantity, event.quantity)

    @process_event.register
    def _(self, event: Asset.TokensUnfrozen, batch: Batch) -> None:
        asset_id = self.asset_ids[event.originator_id]
        quantity = event.quantity
        self._row(event, batch, asset_id, event.investor_id, "tokens_unfrozen", quantity, -quantity)

    @process_event.register
    def _(self, event: Asset.AddressFrozen, batch: Batch) -> None:
        self._row(event, batch, self.asset_ids[event.originator_id], event.investor_id, "address_frozen")

    @process_event.register
    def _(self, event: Asset.AddressUnfrozen, batch: Batch) -> None:
        self._row(event, batch, self.asset_ids[event.originator_id], event.investor_id, "address_unfrozen")

    @process_event.register
    def _(self, event: Distribution.Declared, batch: Batch) -> None:
        distribution_id = str(event.originator_id)
        self.entitlements.declare(event)
        for investor_id, amount in sorted(event.entitlements.items()):
            self._row(
                event,
                batch,
                event.asset_id,
                investor_id,
                "dividend_entitlement",
                reference=distribution_id,
                amount=amount,
            )

    @process_event.register
    def _(self, event: Distribution.EntitlementsPaid, batch: Batch) -> None:
        distribution_id = str(event.originator_id)
        asset_id, paid = self.entitlements.pay(event)
        for investor_id, amount in paid:
            self._row(
                event,
                batch,
                asset_id,
                investor_id,
                "dividend_payment",
                reference=distribution_id,
                amount=amount,
            )


# ----- queries -----


@dataclass(frozen=True, slots=True)
class Movement:
    position: int
    occurred_at: datetime
    asset_id: str
    investor_id: str
    kind: str
    counterparty: str | None
    reference: str | None
    quantity: int
    amount: int | None
    balance_after: int
    frozen_after: int


_FIELDS = (
    statements.c.position,
    statements.c.occurred_at,
    statements.c.asset_id,
    statements.c.investor_id,
    statements.c.kind,
    statements.c.counterparty,
    statements.c.reference,
    statements.c.quantity,
    statements.c.amount,
    statements.c.balance,
    statements.c.frozen,
)


@dataclass(frozen=True)
class StatementFilter:
    """Whose statement (an investor's, or an asset's) and which part of it."""

    investor_id: str | None = None
    asset_id: str | None = None
    from_position: int | None = None
    to_position: int | None = None


def statement_page(
    conn: Connection, which: StatementFilter, after: tuple[int, str] | None, limit: int
) -> tuple[list[Movement], bool]:
    """Up to `limit` movements after the key `after` (position, then the asset of an investor's
    statement or the investor of an asset's), in that order, and whether more follow."""
    s = statements.c
    query = select(*_FIELDS)
    if which.investor_id is not None:
        query = query.where(s.investor_id == which.investor_id)
        if which.asset_id is not None:
            query = query.where(s.asset_id == which.asset_id)
        second = s.asset_id
    else:
        query = query.where(s.asset_id == which.asset_id)
        second = s.investor_id
    if which.from_position is not None:
        query = query.where(s.position >= which.from_position)
    if which.to_position is not None:
        query = query.where(s.position <= which.to_position)
    if after is not None:
        query = query.where(tuple_(s.position, second) > tuple_(*after))
    rows = conn.execute(query.order_by(s.position, second).limit(limit + 1)).all()
    return [Movement(*r) for r in rows[:limit]], len(rows) > limit


def whole_statement(
    conn: Connection, which: StatementFilter, chunk: int = 2000
) -> Iterator[Sequence[Movement]]:
    """The statement in chunks, each read by key after the last (for a streamed export)."""
    after: tuple[int, str] | None = None
    while True:
        page, more = statement_page(conn, which, after, chunk)
        if page:
            yield page
        if not more:
            return
        last = page[-1]
        after = (last.position, last.asset_id if which.investor_id is not None else last.investor_id)


async def statement_page_async(
    conn: AsyncConnection[Any], which: StatementFilter, after: tuple[int, str] | None, limit: int
) -> tuple[list[tuple[Any, ...]], bool, int, bool]:
    """`statement_page` on a plain psycopg connection (PostgreSQL) as tuples in the order of
    `Movement`'s fields, with the position of the views and whether the investor (or asset) is
    known: one statement, so one snapshot and one round trip."""
    if which.investor_id is not None:
        owner, second, known = "investor_id", "asset_id", "SELECT 1 FROM rm_investors WHERE investor_id = $1"
        params: list[Any] = [which.investor_id]
    else:
        owner, second, known = "asset_id", "investor_id", "SELECT 1 FROM rm_assets WHERE asset_id = $1"
        params = [which.asset_id]
    conditions = [f"{owner} = $1"]
    for condition, value in (
        ("asset_id = ${}", which.asset_id if which.investor_id is not None else None),
        ("position >= ${}", which.from_position),
        ("position <= ${}", which.to_position),
    ):
        if value is not None:
            params.append(value)
            conditions.append(condition.format(len(params)))
    if after is not None:
        params.extend(after)
        conditions.append(f"(position, {second}) > (${len(params) - 1}::bigint, ${len(params)}::text)")
    params.append(limit + 1)
    statement = (
        "SELECT 't', COALESCE(MIN(position), 0), NULL::timestamptz, NULL, NULL, NULL, NULL, NULL,"
        " NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric FROM rm_tracking"
        f" UNION ALL SELECT 'k', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
        f" WHERE EXISTS ({known})"
        " UNION ALL (SELECT 'm', position, occurred_at, asset_id, investor_id, kind, counterparty,"
        f" reference, quantity, amount, balance, frozen FROM rm_statements WHERE {' AND '.join(conditions)}"
        f" ORDER BY position, {second} LIMIT ${len(params)})"
    )
    cursor = AsyncRawCursor(conn)
    cursor.adapters.register_loader("numeric", IntLoader)
    await cursor.execute(statement, params)
    rows = await cursor.fetchall()
    as_of = int(rows[0][1])
    is_known = len(rows) > 1 and rows[1][0] == "k"
    movements = [r[1:] for r in rows[2 if is_known else 1 :]]
    return movements[:limit], len(movements) > limit, as_of, is_known
