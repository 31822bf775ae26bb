"""The asset catalogue: every asset's terms, lifecycle and token, with its supply and holder count.

`AssetsView` writes the catalogue's own rows (`rm_assets`) from an asset's registration and
lifecycle events. The supply and the holder count are the holdings' totals: the holdings view
(`projections.holdings`) keeps them in its own table, `rm_asset_totals`, and the catalogue's
queries join the two (every view commits in the runner's one transaction per batch, so both
are always at the same position).
"""

from __future__ import annotations

import json
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from sqlalchemy import BigInteger, Boolean, Column, Connection, Integer, Select, String, Table, Text, select

from ledger.domain.asset import Asset
from ledger.domain.terms import AssetTerms
from projections.batch import Batch
from projections.holdings import asset_totals
from projections.schema import Exact, metadata

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
    Column("registered_position", BigInteger, nullable=False),
)

# The events of an asset's lifecycle that change its catalogue entry (not its holdings).
LifecycleEvent = (
    Asset.Approved
    | Asset.OfferingOpened
    | Asset.OfferingClosed
    | Asset.Paused
    | Asset.Unpaused
    | Asset.TokenBound
)


class AssetsView:
    """Projects each asset's registration and lifecycle into its catalogue row."""

    name = "assets"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.assets = tables["rm_assets"]
        self.asset_ids: dict[Any, str] = {}

    def load(self, conn: Connection) -> None:
        ids = conn.execute(select(self.assets.c.asset_id)).scalars()
        self.asset_ids = {Asset.create_id(asset_id): asset_id for asset_id in ids}

    def flush(self, batch: Batch) -> None:
        """Every row is written as its event is processed."""

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Asset.Registered, batch: Batch) -> None:
        self.asset_ids[event.originator_id] = event.asset_id
        batch.insert(self.assets, catalogue_row(event, batch.position))

    @process_event.register
    def _(self, event: LifecycleEvent, batch: Batch) -> None:
        batch.update(self.assets, {"asset_id": self.asset_ids[event.originator_id]}, lifecycle_values(event))


def catalogue_row(event: Asset.Registered, position: int) -> dict[str, Any]:
    """The catalogue entry of a newly registered asset (a draft: no offering, no token)."""
    return {
        **AssetTerms.row_of(event),  # a column per term
        "allowed_countries": json.dumps(event.allowed_countries),
        "accredited_only": event.accredited_only,
        "lockup_seconds": event.lockup_seconds,
        "status": "draft",
        "offering_open": False,
        "paused": False,
        "chain_id": None,
        "token_address": None,
        "identity_registry": None,
        "registered_position": position,
    }


def lifecycle_values(event: LifecycleEvent) -> dict[str, Any]:
    """The catalogue columns a lifecycle event sets."""
    if isinstance(event, Asset.Approved):
        return {"status": "approved"}
    if isinstance(event, Asset.OfferingOpened | Asset.OfferingClosed):
        return {"offering_open": isinstance(event, Asset.OfferingOpened)}
    if isinstance(event, Asset.Paused | Asset.Unpaused):
        return {"paused": isinstance(event, Asset.Paused)}
    return {
        "status": "tokenized",
        "chain_id": event.chain_id,
        "token_address": event.token_address,
        "identity_registry": event.identity_registry,
    }


# ----- queries -----


# Every catalogue entry with its holdings' supply and holder count: the columns of `rm_assets`,
# the totals before `registered_position` (the order the catalogue's rows had when it held them).
CATALOGUE: Select[Any] = select(
    *(c for c in assets.c if c.name != "registered_position"),
    asset_totals.c.total_supply,
    asset_totals.c.holder_count,
    assets.c.registered_position,
).join_from(assets, asset_totals, asset_totals.c.asset_id == assets.c.asset_id)


def asset_record(conn: Connection, asset_id: str) -> dict[str, Any] | None:
    """The catalogue entry of an asset: terms, lifecycle, supply and holders."""
    row = conn.execute(CATALOGUE.where(assets.c.asset_id == asset_id)).first()
    return None if row is None else _asset_record(row)


def assets_page(
    conn: Connection, status: str | None, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` catalogue entries (of one status, if given) after asset id `after`, in
    asset id order, and whether more follow."""
    query = CATALOGUE
    if status is not None:
        query = query.where(assets.c.status == status)
    if after is not None:
        query = query.where(assets.c.asset_id > after)
    rows = conn.execute(query.order_by(assets.c.asset_id).limit(limit + 1)).all()
    return [_asset_record(r) for r in rows[:limit]], len(rows) > limit


def _asset_record(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    record["allowed_countries"] = json.loads(record["allowed_countries"])
    token = {k: record.pop(k) for k in ("chain_id", "token_address", "identity_registry")}
    record["token"] = token if token["token_address"] else None
    return record
