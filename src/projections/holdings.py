"""Current holdings and cap tables as of any past position, and each asset's totals.

The totals (supply, holder count, changes since the last checkpoint) are kept in
`rm_asset_totals`, in the same transaction as the holdings they sum; the catalogue's
readers (`projections.assets`) join them to its entries. The investments placed and
not yet paid or cancelled are kept in `rm_pending_investments`, so that a payment
adds to the investor's invested amount without reading another view's table.

History is kept as one change row per holder per event (quantity and frozen
after the event) plus periodic checkpoints of the whole cap table, each one row
holding every holder as JSON. An as-of query loads the last checkpoint at or
before the position and applies the changes between them: it never replays
events and reads one checkpoint and at most half a cap table's worth of change
rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from psycopg.types.numeric import IntLoader
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    Select,
    String,
    Table,
    Text,
    bindparam,
    select,
)

from ledger.domain.asset import Asset
from ledger.domain.investment import Investment
from ledger.pauses import gc_paused
from projections.batch import Batch
from projections.schema import Exact, metadata

CHECKPOINT_MIN_CHANGES = 1000
# A checkpoint is taken after max(CHECKPOINT_MIN_CHANGES, holders // CHECKPOINT_SHARE) changes
# of an asset: an as-of query then reads one checkpoint and on average half that many change
# rows, and a checkpoint (one row) costs the runner about a microsecond per change.
CHECKPOINT_SHARE = 2
HOLDINGS_FILLFACTOR = 70

holdings = Table(
    "rm_holdings",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("investor_id", String(64), primary_key=True, index=True),
    Column("quantity", Exact, nullable=False),
    Column("frozen", Exact, nullable=False),
    Column("address_frozen", Boolean, nullable=False),
    Column("invested_amount", Exact, nullable=False),
    # Every batch rewrites the rows of the holders it changed: room on each page lets
    # PostgreSQL update them in place (HOT), without new entries in both indexes.
    postgresql_with={"fillfactor": HOLDINGS_FILLFACTOR},
)

# One row per registered asset: its holdings' totals, shown in the catalogue beside its terms.
asset_totals = Table(
    "rm_asset_totals",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("total_supply", Exact, nullable=False),
    Column("holder_count", Integer, nullable=False),
    Column("changes_since_checkpoint", Integer, nullable=False),
)

# The investments placed and neither paid nor cancelled: what a payment adds to its investor's
# invested amount.
pending_investments = Table(
    "rm_pending_investments",
    metadata,
    Column("investment_id", String(36), primary_key=True),
    Column("asset_id", String(32), nullable=False),
    Column("investor_id", String(64), nullable=False),
    Column("accepted_amount", Exact, nullable=False),
)


# One row per holder changed by an event: the holder's quantity and frozen quantity right
# after the event at `position`.
holding_changes = Table(
    "rm_holding_changes",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("investor_id", String(64), primary_key=True),
    Column("quantity", Exact, nullable=False),
    Column("frozen", Exact, nullable=False),
)

# Now and then, every holder of an asset right after the event at `position`, in one row:
# `holders` is `encode_holders` of them.
checkpoints = Table(
    "rm_captable_snapshots",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("position", BigInteger, primary_key=True),
    Column("holders", Text, nullable=False),
)


@dataclass
class Holder:
    quantity: int = 0
    frozen: int = 0
    address_frozen: bool = False
    invested_amount: int = 0


@dataclass
class AssetTotals:
    total_supply: int = 0
    changes_since_checkpoint: int = 0
    holders: dict[str, Holder] = field(default_factory=dict)
    sorted_ids: list[str] = field(default_factory=list)  # the keys of `holders`, sorted, once asked

    def ids(self) -> list[str]:
        """Every investor in `holders` (holders are never removed), in order; sorted again only
        when some were added since."""
        if len(self.sorted_ids) != len(self.holders):
            self.sorted_ids = sorted(self.holders)
        return self.sorted_ids

    @property
    def holder_count(self) -> int:
        return sum(1 for h in self.holders.values() if h.quantity > 0)


def encode_holders(holders: dict[str, Holder], ids: list[str] | None = None) -> str:
    """Holders with a positive quantity as JSON columns `[[investor_id...], [quantity...],
    [frozen...]]` in investor id order (cheaper to write and to read than an object each).
    `ids`: every key of `holders`, sorted, if the caller keeps them."""
    live = [(i, h) for i in (sorted(holders) if ids is None else ids) if (h := holders[i]).quantity > 0]
    return json.dumps(
        [[i for i, _ in live], [h.quantity for _, h in live], [h.frozen for _, h in live]],
        separators=(",", ":"),
    )


def decode_holders(text: str) -> dict[str, tuple[int, int]]:
    """{investor_id: (quantity, frozen)} of `encode_holders`."""
    ids, quantities, frozen = json.loads(text)
    return dict(zip(ids, zip(quantities, frozen, strict=True), strict=True))


class HoldingsView:
    """Projects asset and investment events into current holdings, cap-table history and
    each asset's totals.

    It keeps the current holdings and the pending investments in memory (loaded from its own
    tables when it starts or when another process moved the view), so each event costs no read.
    """

    name = "holdings"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.totals = tables["rm_asset_totals"]
        self.holdings = tables["rm_holdings"]
        self.changes = tables["rm_holding_changes"]
        self.checkpoints = tables["rm_captable_snapshots"]
        self.pending = tables["rm_pending_investments"]
        self.asset_ids: dict[Any, str] = {}
        self.state: dict[str, AssetTotals] = {}
        self.pending_investments: dict[str, tuple[str, str, int]] = {}
        self._dirty_holders: set[tuple[str, str]] = set()
        self._dirty_assets: set[str] = set()
        self._change_rows: list[tuple[str, int, str, int, int]] = []  # of this batch, in order
        # Investments placed in this batch and still pending (rows to insert), and investments
        # placed before it and paid or cancelled in it (rows to delete): an investment placed and
        # settled within one batch is never written.
        self._placed: dict[str, None] = {}
        self._settled: dict[str, None] = {}

    def load(self, conn: Connection) -> None:
        self.state = {}
        t = self.totals.c
        for row in conn.execute(select(t.asset_id, t.total_supply, t.changes_since_checkpoint)):
            self.state[row.asset_id] = AssetTotals(row.total_supply, row.changes_since_checkpoint)
            self.asset_ids[Asset.create_id(row.asset_id)] = row.asset_id
        for row in conn.execute(select(self.holdings)):
            self.state[row.asset_id].holders[row.investor_id] = Holder(
                row.quantity, row.frozen, row.address_frozen, row.invested_amount
            )
        p = self.pending.c
        pending = select(p.investment_id, p.asset_id, p.investor_id, p.accepted_amount)
        self.pending_investments = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(pending)}
        self._dirty_holders.clear()
        self._dirty_assets.clear()
        self._change_rows.clear()
        self._placed.clear()
        self._settled.clear()

    # ----- events -----

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Asset.Registered, batch: Batch) -> None:
        self.state[event.asset_id] = AssetTotals()
        self.asset_ids[event.originator_id] = event.asset_id
        self._dirty_assets.add(event.asset_id)

    def _asset_id(self, event: Any) -> str:
        return self.asset_ids[event.originator_id]

    @process_event.register
    def _(self, event: Investment.Placed, batch: Batch) -> None:
        investment_id = str(event.originator_id)
        self.pending_investments[investment_id] = (event.asset_id, event.investor_id, event.accepted_amount)
        self._placed[investment_id] = None

    @process_event.register
    def _(self, event: Investment.PaymentConfirmed, batch: Batch) -> None:
        asset_id, investor_id, accepted = self._settle(str(event.originator_id))
        self._holder(asset_id, investor_id).invested_amount += accepted
        self._dirty_holders.add((asset_id, investor_id))

    @process_event.register
    def _(self, event: Investment.Cancelled, batch: Batch) -> None:
        if str(event.originator_id) in self.pending_investments:
            self._settle(str(event.originator_id))

    def _settle(self, investment_id: str) -> tuple[str, str, int]:
        """Takes a pending investment off the list: its row goes unless this batch placed it."""
        if investment_id in self._placed:
            del self._placed[investment_id]
        else:
            self._settled[investment_id] = None
        return self.pending_investments.pop(investment_id)

    @process_event.register
    def _(self, event: Asset.TokensIssued, batch: Batch) -> None:
        asset_id = self._asset_id(event)
        self.state[asset_id].total_supply += event.quantity
        self._change(batch, asset_id, (event.investor_id, event.quantity, 0))

    @process_event.register
    def _(self, event: Asset.TokensTransferred, batch: Batch) -> None:
        asset_id = self._asset_id(event)
        self._change(
            batch,
            asset_id,
            (event.from_investor_id, -event.quantity, -event.unfrozen),
            (event.to_investor_id, event.quantity, 0),
        )

    @process_event.register
    def _(self, event: Asset.TokensRedeemed, batch: Batch) -> None:
        asset_id = self._asset_id(event)
        self.state[asset_id].total_supply -= event.quantity
        self._change(batch, asset_id, (event.investor_id, -event.quantity, -event.unfrozen))

    @process_event.register
    def _(self, event: Asset.TokensFrozen, batch: Batch) -> None:
        self._change(batch, self._asset_id(event), (event.investor_id, 0, event.quantity))

    @process_event.register
    def _(self, event: Asset.TokensUnfrozen, batch: Batch) -> None:
        self._change(batch, self._asset_id(event), (event.investor_id, 0, -event.quantity))

    @process_event.register
    def _(self, event: Asset.AddressFrozen, batch: Batch) -> None:
        self._address_freeze(self._asset_id(event), event.investor_id, True)

    @process_event.register
    def _(self, event: Asset.AddressUnfrozen, batch: Batch) -> None:
        self._address_freeze(self._asset_id(event), event.investor_id, False)

    # ----- state changes -----

    def _holder(self, asset_id: str, investor_id: str) -> Holder:
        holders = self.state[asset_id].holders
        if investor_id not in holders:
            holders[investor_id] = Holder()
        return holders[investor_id]

    def _address_freeze(self, asset_id: str, investor_id: str, frozen: bool) -> None:
        self._holder(asset_id, investor_id).address_frozen = frozen
        self._dirty_holders.add((asset_id, investor_id))

    def _change(self, batch: Batch, asset_id: str, *changes: tuple[str, int, int]) -> None:
        """Applies one event's (investor, quantity delta, frozen delta) changes; a change row
        each, then a checkpoint if one is due (so a checkpoint never splits an event)."""
        totals = self.state[asset_id]
        holders = totals.holders
        for investor_id, quantity, frozen in changes:
            holder = holders.get(investor_id)
            if holder is None:
                holder = holders[investor_id] = Holder()
            holder.quantity += quantity
            holder.frozen += frozen
            self._dirty_holders.add((asset_id, investor_id))
            self._change_rows.append((asset_id, batch.position, investor_id, holder.quantity, holder.frozen))
        self._dirty_assets.add(asset_id)
        totals.changes_since_checkpoint += len(changes)
        if totals.changes_since_checkpoint >= max(CHECKPOINT_MIN_CHANGES, len(holders) // CHECKPOINT_SHARE):
            self._checkpoint(batch, asset_id)

    def _checkpoint(self, batch: Batch, asset_id: str) -> None:
        totals = self.state[asset_id]
        batch.insert(
            self.checkpoints,
            {
                "asset_id": asset_id,
                "position": batch.position,
                "holders": encode_holders(totals.holders, totals.ids()),
            },
        )
        totals.changes_since_checkpoint = 0

    def flush(self, batch: Batch) -> None:
        """Writes the batch's change rows, the final state of every holder and asset it changed,
        and the pending investments it placed or settled."""
        batch.insert_rows(self.changes, CHANGE_COLUMNS, self._change_rows)
        state = self.state
        batch.upsert_rows(
            self.holdings,
            HOLDING_COLUMNS,
            [
                (a, i, h.quantity, h.frozen, h.address_frozen, h.invested_amount)
                for a, i in sorted(self._dirty_holders)
                for h in (state[a].holders[i],)
            ],
        )
        batch.upsert_rows(
            self.totals,
            TOTAL_COLUMNS,
            [
                (a, t.total_supply, t.holder_count, t.changes_since_checkpoint)
                for a in sorted(self._dirty_assets)
                for t in (state[a],)
            ],
        )
        pending = self.pending_investments
        batch.insert_rows(self.pending, PENDING_COLUMNS, [(i, *pending[i]) for i in self._placed])
        batch.delete_rows(self.pending, ("investment_id",), [(i,) for i in self._settled])
        self._dirty_holders.clear()
        self._dirty_assets.clear()
        self._change_rows = []
        self._placed.clear()
        self._settled.clear()


CHANGE_COLUMNS = ("asset_id", "position", "investor_id", "quantity", "frozen")
HOLDING_COLUMNS = ("asset_id", "investor_id", "quantity", "frozen", "address_frozen", "invested_amount")
TOTAL_COLUMNS = ("asset_id", "total_supply", "holder_count", "changes_since_checkpoint")
PENDING_COLUMNS = ("investment_id", "asset_id", "investor_id", "accepted_amount")

# ----- queries -----


@dataclass(frozen=True, slots=True)
class CapTableRow:
    investor_id: str
    quantity: int
    frozen: int
    ownership_bps: int


@dataclass(frozen=True)
class CapTable:
    asset_id: str
    as_of_position: int
    total_supply: int
    holder_count: int
    holders: list[CapTableRow]


def cap_table_from(asset_id: str, position: int, rows: dict[str, Any]) -> CapTable:
    """Orders holders by quantity descending, then investor id; ownership in basis points, floored.

    `rows` maps each investor to a (quantity, frozen) pair.
    """
    live = [(i, q, f) for i, (q, f) in rows.items() if q > 0]
    live.sort(key=itemgetter(0))
    live.sort(key=itemgetter(1), reverse=True)  # stable: equal quantities stay in id order
    supply = sum(map(itemgetter(1), live))
    holders = [CapTableRow(i, q, f, q * 10_000 // supply) for i, q, f in live]
    return CapTable(asset_id, position, supply, len(holders), holders)


def current_cap_table(conn: Connection, asset_id: str, position: int) -> CapTable:
    with gc_paused():
        rows = _fetch(conn, _CURRENT, asset_id=asset_id)
        return cap_table_from(asset_id, position, {i: (q, f) for i, q, f in rows})


def cap_table_as_of(conn: Connection, asset_id: str, position: int) -> CapTable:
    """The cap table as it stood right after the event at `position`."""
    with gc_paused():
        start = _fetch(conn, _LAST_CHECKPOINT, asset_id=asset_id, position=position)
        state = decode_holders(start[0][1]) if start else {}
        after = start[0][0] if start else 0
        changes = _fetch(conn, _CHANGES, asset_id=asset_id, start=after, position=position)
        state.update({i: (q, f) for i, q, f in changes})  # an investor's later rows replace earlier ones
        return cap_table_from(asset_id, position, state)


@dataclass
class _Query:
    """A query of this module, compiled for PostgreSQL once, on its first use there (`_fetch`)."""

    select: Select[Any]
    compiled: tuple[str, dict[str, Any]] | None = None

    def for_driver(self, conn: Connection) -> tuple[str, dict[str, Any]]:
        if self.compiled is None:
            compiled = self.select.compile(dialect=conn.dialect)
            self.compiled = (str(compiled), compiled.params)
        return self.compiled


_CURRENT = _Query(
    select(holdings.c.investor_id, holdings.c.quantity, holdings.c.frozen).where(
        holdings.c.asset_id == bindparam("asset_id"), holdings.c.quantity > 0
    )
)
_LAST_CHECKPOINT = _Query(
    select(checkpoints.c.position, checkpoints.c.holders)
    .where(checkpoints.c.asset_id == bindparam("asset_id"), checkpoints.c.position <= bindparam("position"))
    .order_by(checkpoints.c.position.desc())
    .limit(1)
)
_CHANGES = _Query(
    select(holding_changes.c.investor_id, holding_changes.c.quantity, holding_changes.c.frozen)
    .where(
        holding_changes.c.asset_id == bindparam("asset_id"),
        # `>=`: checkpoints made before migration 0003 may have been taken halfway through
        # an event (after a transfer's sender, before its receiver); change rows hold
        # absolute values, so re-applying the checkpoint position's own changes is exact.
        holding_changes.c.position >= bindparam("start"),
        holding_changes.c.position <= bindparam("position"),
    )
    .order_by(holding_changes.c.position)
)


def _fetch(conn: Connection, query: _Query, **params: Any) -> Sequence[Any]:
    """The rows of one of the queries above, as tuples.

    On PostgreSQL they come straight from the driver, NUMERIC read as `int`: a result
    object's per-row work and `Exact`'s were most of the cost of a cap table.
    """
    if conn.dialect.name != "postgresql":
        return conn.execute(query.select, params).all()
    statement, defaults = query.for_driver(conn)
    with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.adapters.register_loader("numeric", IntLoader)
        return cursor.execute(statement, defaults | params).fetchall()  # type: ignore[no-any-return]
