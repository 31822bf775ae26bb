"""Compliance views: per asset (holder limits, countries, freezes, breaches) and per investor."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, or_, select

from ledger.domain.investor import ineligibility
from projections.assets import assets
from projections.holdings import holdings
from projections.investors import investors


@dataclass(frozen=True)
class Breach:
    kind: str
    investor_id: str | None
    detail: str


@dataclass(frozen=True)
class Freeze:
    asset_id: str
    investor_id: str
    frozen: int
    address_frozen: bool


@dataclass(frozen=True)
class AssetCompliance:
    asset_id: str
    holder_count: int
    max_holders: int | None
    holders_by_country: dict[str, int]
    frozen_holders: list[Freeze]
    paused: bool
    breaches: list[Breach] = field(default_factory=list)


def asset_compliance(conn: Connection, asset_id: str, now: datetime) -> AssetCompliance | None:
    """Checks today's holders against the asset's terms; every finding is listed as a breach."""
    asset = conn.execute(select(assets).where(assets.c.asset_id == asset_id)).first()
    if asset is None:
        return None
    h, i = holdings.c, investors.c
    rows = conn.execute(
        select(
            h.investor_id,
            h.quantity,
            h.frozen,
            h.address_frozen,
            i.country,
            i.accredited,
            i.kyc_status,
            i.kyc_expires_at,
        )
        .join(investors, i.investor_id == h.investor_id)
        .where(h.asset_id == asset_id, or_(h.quantity > 0, h.address_frozen))
        .order_by(h.investor_id)
    ).all()
    allowed = json.loads(asset.allowed_countries)
    holders = [r for r in rows if r.quantity > 0]
    breaches: list[Breach] = []
    if asset.max_holders is not None and len(holders) > asset.max_holders:
        breaches.append(
            Breach("max_holders_exceeded", None, f"{len(holders)} holders, limit {asset.max_holders}")
        )
    for r in holders:
        if asset.max_balance is not None and r.quantity > asset.max_balance:
            breaches.append(
                Breach(
                    "max_balance_exceeded", r.investor_id, f"holds {r.quantity}, limit {asset.max_balance}"
                )
            )
        for reason in ineligibility(
            r.kyc_status, r.kyc_expires_at, r.country, r.accredited, allowed, asset.accredited_only, now
        ):
            breaches.append(Breach("holder_not_eligible", r.investor_id, reason))
    return AssetCompliance(
        asset_id=asset_id,
        holder_count=len(holders),
        max_holders=asset.max_holders,
        holders_by_country=dict(sorted(Counter(r.country for r in holders).items())),
        frozen_holders=[
            Freeze(asset_id, r.investor_id, r.frozen, r.address_frozen)
            for r in rows
            if r.frozen or r.address_frozen
        ],
        paused=asset.paused,
        breaches=breaches,
    )


@dataclass(frozen=True)
class Eligibility:
    asset_id: str
    eligible: bool
    reasons: list[str]


@dataclass(frozen=True)
class InvestorCompliance:
    investor_id: str
    kyc_status: str
    kyc_expires_at: datetime | None
    country: str
    accredited: bool
    eligibility: list[Eligibility]
    freezes: list[Freeze]


def investor_compliance(conn: Connection, investor_id: str, now: datetime) -> InvestorCompliance | None:
    investor = conn.execute(select(investors).where(investors.c.investor_id == investor_id)).first()
    if investor is None:
        return None
    expires = investor.kyc_expires_at
    eligibility = []
    for a in conn.execute(
        select(assets.c.asset_id, assets.c.allowed_countries, assets.c.accredited_only).order_by(
            assets.c.asset_id
        )
    ):
        reasons = ineligibility(
            investor.kyc_status,
            expires,
            investor.country,
            investor.accredited,
            json.loads(a.allowed_countries),
            a.accredited_only,
            now,
        )
        eligibility.append(Eligibility(a.asset_id, not reasons, reasons))
    h = holdings.c
    freezes = [
        Freeze(r.asset_id, investor_id, r.frozen, r.address_frozen)
        for r in conn.execute(
            select(h.asset_id, h.frozen, h.address_frozen)
            .where(h.investor_id == investor_id, or_(h.frozen > 0, h.address_frozen))
            .order_by(h.asset_id)
        )
    ]
    return InvestorCompliance(
        investor_id, investor.kyc_status, expires, investor.country, investor.accredited, eligibility, freezes
    )
