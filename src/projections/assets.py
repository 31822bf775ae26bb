"""The asset catalogue: every asset's terms, lifecycle and token, with its supply and holder count.

Its rows are written by the holdings view (`projections.holdings`): the supply, the holder
count and the change count since the last cap-table checkpoint are the holdings' own
totals, kept in the same transaction and under the same tracking row as the holdings they
sum. This module says what a row holds, what each lifecycle event changes in it, and how
the catalogue entry of an asset is read.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Connection, Integer, String, Table, Text, select

from ledger.domain.asset import Asset
from ledger.domain.terms import AssetTerms
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
    Column("total_supply", Exact, nullable=False),
    Column("holder_count", Integer, nullable=False),
    Column("changes_since_checkpoint", Integer, nullable=False),
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


def catalogue_row(event: Asset.Registered, position: int) -> dict[str, Any]:
    """The catalogue entry of a newly registered asset (a draft: no offering, no token, no holders)."""
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
        "total_supply": 0,
        "holder_count": 0,
        "changes_since_checkpoint": 0,
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


def asset_record(conn: Connection, asset_id: str) -> dict[str, Any] | None:
    """The catalogue entry of an asset: terms, lifecycle, supply and holders."""
    row = conn.execute(select(assets).where(assets.c.asset_id == asset_id)).first()
    return None if row is None else _asset_record(row)


def assets_page(
    conn: Connection, status: str | None, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` catalogue entries (of one status, if given) after asset id `after`, in
    asset id order, and whether more follow."""
    query = select(assets)
    if status is not None:
        query = query.where(assets.c.status == status)
    if after is not None:
        query = query.where(assets.c.asset_id > after)
    rows = conn.execute(query.order_by(assets.c.asset_id).limit(limit + 1)).all()
    return [_asset_record(r) for r in rows[:limit]], len(rows) > limit


def _asset_record(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    record["allowed_countries"] = json.loads(record["allowed_countries"])
    record.pop("changes_since_checkpoint")
    token = {k: record.pop(k) for k in ("chain_id", "token_address", "identity_registry")}
    record["token"] = token if token["token_address"] else None
    return record
