"""Asset catalogue, current holdings and cap tables as of any past position.

History is kept as one change row per holder per event (quantity and frozen
after the event) plus periodic checkpoints of the whole cap table. An as-of
query loads the last checkpoint at or before the position and applies the
changes between them: it never replays events and reads at most about two cap
tables' worth of rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from sqlalchemy import BigInteger, Boolean, Column, Connection, Integer, String, Table, Text, func, select

from ledger.domain.asset import Asset
from ledger.domain.investment import Investment
from projections.batch import Batch
from projections.schema import Exact, metadata

CHECKPOINT_MIN_CHANGES = 1000

assets = Table(
    "rm_assets",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("symbol", String(16), nullable=False),
    Column("decimals", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("unit_price", Exact, nullable=False),
    Column("authorized_supply", Exact, nullable=False),
    Column("min_investment", Exact, nullable=False),
    Column("max_investment", Exact, nullable=False),
    Column("max_holders", Integer),
    Column("max_balance", Exact),
    Column("allowed_countries", Text, nullable=False),
    Column("accredited_only", Boolean, nullable=False),
    Column("lockup_seconds", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("offering_open", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("chain_id", BigInteger),
    Column("token_address", String(42)),
    Column("identity_registry", String(42)),
    Column("total_supply", Exact, nullable=False),
    Column("holder_count", Integer, nullable=False),
    Column("changes_since_checkpoint", Integer, nullable=False),
    Column("registered_position", BigInteger, nullable=False),
)

holdings = Table(
    "rm_holdings",
    metadata,
    Column("asset_id", String(32), primary_key=True),
    Column("investor_id", String(64), primary_key=True, index=True),
    Column("quantity", Exact, nullable=False),
    Column("frozen", Exact, nullable=False),
    Column("address_frozen", Boolean, nullable=False),
    Column("invested_amount", Exact, nullable=False),
)


def _holder_states(name: str) -> Table:
    """A holder's quantity and frozen quantity right after the event at `position`."""
    return Table(
        name,
        metadata,
        Column("asset_id", String(32), primary_key=True),
        Column("position", BigInteger, primary_key=True),
        Column("investor_id", String(64), primary_key=True),
        Column("quantity", Exact, nullable=False),
        Column("frozen", Exact, nullable=False),
    )


holding_changes = _holder_states("rm_holding_changes")  # one row per holder changed by an event
checkpoints = _holder_states("rm_captable_checkpoints")  # every holder, now and then


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

    @property
    def holder_count(self) -> int:
        return sum(1 for h in self.holders.values() if h.quantity > 0)


class HoldingsView:
    """Projects asset events into the catalogue, current holdings and cap-table history.

    It keeps the current holdings in memory (loaded from its own tables when it
    starts or when another process moved the view), so each event costs no read.
    """

    name = "holdings"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.assets = tables["rm_assets"]
        self.holdings = tables["rm_holdings"]
        self.changes = tables["rm_holding_changes"]
        self.checkpoints = tables["rm_captable_checkpoints"]
        self.investments = tables["rm_investments"]
        self.asset_ids: dict[Any, str] = {}
        self.state: dict[str, AssetTotals] = {}
        self.pending_investments: dict[str, tuple[str, str, int]] = {}
        self._dirty_holders: set[tuple[str, str]] = set()
        self._dirty_assets: set[str] = set()

    def load(self, conn: Connection) -> None:
        self.state = {}
        columns = (self.assets.c.asset_id, self.assets.c.total_supply, self.assets.c.changes_since_checkpoint)
        for row in conn.execute(select(*columns)):
            self.state[row.asset_id] = AssetTotals(row.total_supply, row.changes_since_checkpoint)
            self.asset_ids[Asset.create_id(row.asset_id)] = row.asset_id
        for row in conn.execute(select(self.holdings)):
            self.state[row.asset_id].holders[row.investor_id] = Holder(
                row.quantity, row.frozen, row.address_frozen, row.invested_amount
            )
        i = self.investments.c
        pending = select(i.investment_id, i.asset_id, i.investor_id, i.accepted_amount).where(
            i.status == "pending_payment"
        )
        self.pending_investments = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(pending)}
        self._dirty_holders.clear()
        self._dirty_assets.clear()

    # ----- events -----

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Asset.Registered, batch: Batch) -> None:
        self.state[event.asset_id] = AssetTotals()
        self.asset_ids[event.originator_id] = event.asset_id
        batch.insert(
            self.assets,
            {
                "asset_id": event.asset_id,
                "name": event.name,
                "symbol": event.symbol,
                "decimals": event.decimals,
                "currency": event.currency,
                "unit_price": event.unit_price,
                "authorized_supply": event.authorized_supply,
                "min_investment": event.min_investment,
                "max_investment": event.max_investment,
                "max_holders": event.max_holders,
                "max_balance": event.max_balance,
                "allowed_countries": json.dumps(event.allowed_countries),
                "accredited_only": event.accredited_only,
                "lockup_seconds": event.lockup_seconds,
                "status": "draft",
                "offering_open": False,
                "paused": False,
                "chain_id": None,
                "token_address": None,
                "identity_registry": None,
                "total_supply": 0,
                "holder_count": 0,
                "changes_since_checkpoint": 0,
                "registered_position": batch.position,
            },
        )

    def _asset_flags(self, event: Any, batch: Batch, **values: Any) -> None:
        batch.update(self.assets, {"asset_id": self._asset_id(event)}, values)

    def _asset_id(self, event: Any) -> str:
        return self.asset_ids[event.originator_id]

    @process_event.register
    def _(self, event: Asset.Approved, batch: Batch) -> None:
        self._asset_flags(event, batch, status="approved")

    @process_event.register
    def _(self, event: Asset.OfferingOpened, batch: Batch) -> None:
        self._asset_flags(event, batch, offering_open=True)

    @process_event.register
    def _(self, event: Asset.OfferingClosed, batch: Batch) -> None:
        self._asset_flags(event, batch, offering_open=False)

    @process_event.register
    def _(self, event: Asset.Paused, batch: Batch) -> None:
        self._asset_flags(event, batch, paused=True)

    @process_event.register
    def _(self, event: Asset.Unpaused, batch: Batch) -> None:
        self._asset_flags(event, batch, paused=False)

    @process_event.register
    def _(self, event: Asset.TokenBound, batch: Batch) -> None:
        self._asset_flags(
            event,
            batch,
            status="tokenized",
            chain_id=event.chain_id,
            token_address=event.token_address,
            identity_registry=event.identity_registry,
        )

    @process_event.register
    def _(self, event: Investment.Placed, batch: Batch) -> None:
        self.pending_investments[str(event.originator_id)] = (
            event.asset_id,
            event.investor_id,
            event.accepted_amount,
        )

    @process_event.register
    def _(self, event: Investment.PaymentConfirmed, batch: Batch) -> None:
        asset_id, investor_id, accepted = self.pending_investments.pop(str(event.originator_id))
        self._holder(asset_id, investor_id).invested_amount += accepted
        self._dirty_holders.add((asset_id, investor_id))

    @process_event.register
    def _(self, event: Investment.Cancelled, batch: Batch) -> None:
        self.pending_investments.pop(str(event.originator_id), None)

    @process_event.register
    def _(self, event: Asset.TokensIssued, batch: Batch) -> None:
        asset_id = self._asset_id(event)
        self.state[asset_id].total_supply += event.quantity
        self._change(batch, asset_id, event.investor_id, event.quantity, 0)

    @process_event.register
    def _(self, event: Asset.TokensTransferred, batch: Batch) -> None:
        asset_id = self._asset_id(event)
        self._change(batch, asset_id, event.from_investor_id, -event.quantity, -event.unfrozen)
        self._change(batch, asset_id, event.to_investor_id, event.quantity, 0)

    @process_event.register
    def _(self, event: Asset.TokensRedeemed, batch: Batch) -> None:
        asset_id = self._asset_id(event)
        self.state[asset_id].total_supply -= event.quantity
        self._change(batch, asset_id, event.investor_id, -event.quantity, -event.unfrozen)

    @process_event.register
    def _(self, event: Asset.TokensFrozen, batch: Batch) -> None:
        self._change(batch, self._asset_id(event), event.investor_id, 0, event.quantity)

    @process_event.register
    def _(self, event: Asset.TokensUnfrozen, batch: Batch) -> None:
        self._change(batch, self._asset_id(event), event.investor_id, 0, -event.quantity)

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

    def _change(self, batch: Batch, asset_id: str, investor_id: str, quantity: int, frozen: int) -> None:
        holder = self._holder(asset_id, investor_id)
        holder.quantity += quantity
        holder.frozen += frozen
        self._dirty_holders.add((asset_id, investor_id))
        self._dirty_assets.add(asset_id)
        batch.insert(
            self.changes,
            {
                "asset_id": asset_id,
                "position": batch.position,
                "investor_id": investor_id,
                "quantity": holder.quantity,
                "frozen": holder.frozen,
            },
        )
        totals = self.state[asset_id]
        totals.changes_since_checkpoint += 1
        if totals.changes_since_checkpoint >= max(CHECKPOINT_MIN_CHANGES, len(totals.holders)):
            self._checkpoint(batch, asset_id)

    def _checkpoint(self, batch: Batch, asset_id: str) -> None:
        totals = self.state[asset_id]
        for investor_id, holder in totals.holders.items():
            if holder.quantity > 0:
                batch.insert(
                    self.checkpoints,
                    {
                        "asset_id": asset_id,
                        "position": batch.position,
                        "investor_id": investor_id,
                        "quantity": holder.quantity,
                        "frozen": holder.frozen,
                    },
                )
        totals.changes_since_checkpoint = 0

    def flush(self, batch: Batch) -> None:
        """Writes the final state of every holder and asset this batch changed."""
        for asset_id, investor_id in sorted(self._dirty_holders):
            holder = self.state[asset_id].holders[investor_id]
            batch.upsert(
                self.holdings,
                {
                    "asset_id": asset_id,
                    "investor_id": investor_id,
                    "quantity": holder.quantity,
                    "frozen": holder.frozen,
                    "address_frozen": holder.address_frozen,
                    "invested_amount": holder.invested_amount,
                },
            )
        for asset_id in sorted(self._dirty_assets):
            totals = self.state[asset_id]
            batch.update(
                self.assets,
                {"asset_id": asset_id},
                {
                    "total_supply": totals.total_supply,
                    "holder_count": totals.holder_count,
                    "changes_since_checkpoint": totals.changes_since_checkpoint,
                },
            )
        self._dirty_holders.clear()
        self._dirty_assets.clear()


# ----- queries -----


@dataclass(frozen=True)
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


def cap_table_from(asset_id: str, position: int, rows: dict[str, tuple[int, int]]) -> CapTable:
    """Orders holders by quantity descending, then investor id; ownership in basis points, floored."""
    live = [(i, q, f) for i, (q, f) in rows.items() if q > 0]
    supply = sum(q for _, q, _ in live)
    live.sort(key=lambda r: (-r[1], r[0]))
    holders = [CapTableRow(i, q, f, q * 10_000 // supply) for i, q, f in live]
    return CapTable(asset_id, position, supply, len(holders), holders)


def current_cap_table(conn: Connection, asset_id: str, position: int) -> CapTable:
    rows = conn.execute(
        select(holdings.c.investor_id, holdings.c.quantity, holdings.c.frozen).where(
            holdings.c.asset_id == asset_id, holdings.c.quantity > 0
        )
    )
    return cap_table_from(asset_id, position, {r.investor_id: (r.quantity, r.frozen) for r in rows})


def cap_table_as_of(conn: Connection, asset_id: str, position: int) -> CapTable:
    """The cap table as it stood right after the event at `position`."""
    start = conn.execute(
        select(func.max(checkpoints.c.position)).where(
            checkpoints.c.asset_id == asset_id, checkpoints.c.position <= position
        )
    ).scalar()
    state: dict[str, tuple[int, int]] = {}
    if start is not None:
        rows = conn.execute(
            select(checkpoints.c.investor_id, checkpoints.c.quantity, checkpoints.c.frozen).where(
                checkpoints.c.asset_id == asset_id, checkpoints.c.position == start
            )
        )
        state = {r.investor_id: (r.quantity, r.frozen) for r in rows}
    changes = conn.execute(
        select(holding_changes.c.investor_id, holding_changes.c.quantity, holding_changes.c.frozen)
        .where(
            holding_changes.c.asset_id == asset_id,
            # `>=`: a checkpoint may be taken halfway through an event (after a transfer's
            # sender, before its receiver); change rows hold absolute values, so
            # re-applying the checkpoint position's own changes is exact.
            holding_changes.c.position >= (start or 0),
            holding_changes.c.position <= position,
        )
        .order_by(holding_changes.c.position)
    )
    for r in changes:
        state[r.investor_id] = (r.quantity, r.frozen)
    return cap_table_from(asset_id, position, state)


def asset_record(conn: Connection, asset_id: str) -> dict[str, Any] | None:
    """The catalogue entry of an asset: terms, lifecycle, supply and holders."""
    row = conn.execute(select(assets).where(assets.c.asset_id == asset_id)).first()
    if row is None:
        return None
    record = dict(row._mapping)
    record["allowed_countries"] = json.loads(record["allowed_countries"])
    record.pop("changes_since_checkpoint")
    token = {k: record.pop(k) for k in ("chain_id", "token_address", "identity_registry")}
    record["token"] = token if token["token_address"] else None
    return record
