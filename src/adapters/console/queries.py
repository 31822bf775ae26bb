"""Everything the console reads, in one place: the read models' queries (and, for the history and
its verification, the event store), returned as typed values the pages lay out.

The console never loads aggregates. Each function takes a connection on one snapshot of the
read models (`projections.schema.snapshot`), so a page shows one consistent position.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from adapters.api.routers.audit import concerns, event_json, related_streams
from ledger import merkle
from ledger.application import LedgerApplication
from ledger.errors import NotFoundError
from ledger.store import Verification, canonical_record
from ledger.transparency import HeadVerification, TreeHead, record_from_json, verify_against
from projections.analytics import days
from projections.assets import CATALOGUE, asset_record
from projections.chain import latest_reconciliation
from projections.compliance import AssetCompliance, InvestorCompliance, asset_compliance, investor_compliance
from projections.distributions import DistributionRecord, distribution_record, distributions
from projections.holdings import CapTable, cap_table_as_of, current_cap_table, holding_changes
from projections.investors import InvestorRecord, investor_record, investors
from projections.portfolio import Portfolio, portfolio_view
from projections.proposals import ProposalRecord, proposal_record, proposals
from projections.schema import view_position
from projections.statements import Movement, StatementFilter, whole_statement

__all__ = [
    "AssetCompliance",
    "CapTable",
    "DistributionRecord",
    "InvestorCompliance",
    "InvestorRecord",
    "Portfolio",
    "ProposalRecord",
]

HISTORY_SCAN = 20_000  # events read per history page at most (filters that match little stop here)


@dataclass(frozen=True)
class AssetSummary:
    asset_id: str
    name: str
    status: str
    paused: bool
    offering_open: bool
    currency: str
    decimals: int
    total_supply: int
    holder_count: int


def head(conn: Connection) -> int:
    """The position every read model has reached: what the console shows."""
    return view_position(conn)


def asset_summaries(conn: Connection) -> list[AssetSummary]:
    a = CATALOGUE.subquery().c
    rows = conn.execute(
        select(
            a.asset_id, a.name, a.status, a.paused, a.offering_open, a.currency, a.decimals,
            a.total_supply, a.holder_count,
        ).order_by(a.asset_id)
    )
    return [AssetSummary(*row) for row in rows]


def asset(conn: Connection, asset_id: str) -> dict[str, Any] | None:
    return asset_record(conn, asset_id)


def position_of_date(conn: Connection, day: date, head_position: int) -> int:
    """The last position on or before the end of `day` (UTC): the first position of any later day,
    less one; the head if no event is later; 0 if the history starts after it."""
    later = conn.execute(
        select(func.min(days.c.position)).where(days.c.day > day.toordinal())
    ).scalar()
    return head_position if later is None else max(0, int(later) - 1)


def cap_table(conn: Connection, asset_id: str, as_of: int | None, head_position: int) -> CapTable:
    """The current cap table, or the one right after the event at `as_of`."""
    if as_of is None or as_of >= head_position:
        return current_cap_table(conn, asset_id, head_position)
    return cap_table_as_of(conn, asset_id, as_of)


def neighbours(conn: Connection, asset_id: str, position: int) -> tuple[int | None, int | None]:
    """The positions of the asset's holdings changes just before and just after `position`, for
    stepping through its history."""
    c = holding_changes.c
    before = conn.execute(
        select(func.max(c.position)).where(c.asset_id == asset_id, c.position < position)
    ).scalar()
    after = conn.execute(
        select(func.min(c.position)).where(c.asset_id == asset_id, c.position > position)
    ).scalar()
    return before, after


def compliance(conn: Connection, asset_id: str, now: datetime) -> AssetCompliance | None:
    return asset_compliance(conn, asset_id, now)


def distributions_of(conn: Connection, asset_id: str) -> list[DistributionRecord]:
    d = distributions.c
    ids = conn.execute(
        select(d.distribution_id).where(d.asset_id == asset_id).order_by(d.declared_position)
    ).scalars()
    return [r for i in list(ids) if (r := distribution_record(conn, i)) is not None]


def proposals_of(conn: Connection, asset_id: str) -> list[ProposalRecord]:
    p = proposals.c
    ids = conn.execute(
        select(p.proposal_id).where(p.asset_id == asset_id).order_by(p.snapshot_position)
    ).scalars()
    return [r for i in list(ids) if (r := proposal_record(conn, i)) is not None]


def reconciliation(conn: Connection, asset_id: str) -> dict[str, Any] | None:
    """The asset's latest reconciliation report (None if it was never reconciled)."""
    return latest_reconciliation(conn, asset_id)


@dataclass(frozen=True)
class SupplyPoint:
    position: int
    total_supply: int
    holder_count: int


def supply_history(conn: Connection, asset_id: str, points: int = 60) -> list[SupplyPoint]:
    """Supply and holder count after each of up to `points` evenly spread holdings changes of the
    asset (always its first and last), from the change rows (quantities after each event)."""
    c = holding_changes.c
    rows = conn.execute(
        select(c.position, c.investor_id, c.quantity).where(c.asset_id == asset_id).order_by(c.position)
    )
    held: dict[str, int] = {}
    supply = holders = 0
    every: list[SupplyPoint] = []
    for position, group in itertools.groupby(rows, key=lambda r: r.position):
        for row in group:
            before = held.get(row.investor_id, 0)
            held[row.investor_id] = row.quantity
            supply += row.quantity - before
            holders += (row.quantity > 0) - (before > 0)
        every.append(SupplyPoint(position, supply, holders))
    if len(every) <= points:
        return every
    step = (len(every) - 1) / (points - 1)
    return [every[round(i * step)] for i in range(points)]


# ----- investors -----


@dataclass(frozen=True)
class InvestorSummary:
    investor_id: str
    country: str
    kyc_status: str
    accredited: bool


def investor_summaries(conn: Connection, prefix: str, offset: int, limit: int) -> list[InvestorSummary]:
    """Investors in id order whose id starts with `prefix`, a page of them."""
    i = investors.c
    query = select(i.investor_id, i.country, i.kyc_status, i.accredited).order_by(i.investor_id)
    if prefix:
        query = query.where(i.investor_id.startswith(prefix, autoescape=True))
    return [InvestorSummary(*row) for row in conn.execute(query.offset(offset).limit(limit))]


def investor(conn: Connection, investor_id: str) -> InvestorRecord | None:
    return investor_record(conn, investor_id)


def portfolio(conn: Connection, investor_id: str) -> Portfolio:
    return portfolio_view(conn, investor_id)


def eligibility(conn: Connection, investor_id: str, now: datetime) -> InvestorCompliance | None:
    return investor_compliance(conn, investor_id, now)


def statement(conn: Connection, investor_id: str) -> list[Movement]:
    """Every movement of the investor's holdings, oldest first, with the balance after it: the
    statement of `GET /v1/investors/{id}/transactions`, whole."""
    whole = whole_statement(conn, StatementFilter(investor_id=investor_id))
    return [movement for chunk in whole for movement in chunk]


# ----- history -----


@dataclass(frozen=True)
class HistoryFilter:
    asset_id: str | None = None
    investor_id: str | None = None
    event_type: str | None = None  # a part of the type's name, any case ("Transferred")
    first: int | None = None  # positions, inclusive
    last: int | None = None


@dataclass(frozen=True)
class HistoryPage:
    events: list[dict[str, Any]]  # as `GET /v1/audit/events` gives them
    next_first: int | None  # where the next page starts (None: nothing further)


def history(
    ledger: LedgerApplication, conn: Connection, wanted: HistoryFilter, limit: int
) -> HistoryPage:
    """Events of the store (not the read models) matching the filter, oldest first."""
    related = related_streams(conn, wanted.asset_id or None, wanted.investor_id or None)
    kind = (wanted.event_type or "").lower()
    after = max(0, (wanted.first or 1) - 1)
    found: list[dict[str, Any]] = []
    last_seen, scanned = after, 0
    for record in ledger.admin.records(after=after, stop=wanted.last):
        last_seen, scanned = record.position, scanned + 1
        if not record.topic:  # a hash without its event: `verify` names it
            continue
        event = event_json(ledger, record)
        if kind in event["type"].lower() and concerns(event, wanted.asset_id, wanted.investor_id, related):
            found.append(event)
        if len(found) == limit or scanned == HISTORY_SCAN:
            more = wanted.last is None or last_seen < wanted.last
            return HistoryPage(found, last_seen + 1 if more else None)
    return HistoryPage(found, None)


@dataclass(frozen=True)
class VerifyReport:
    """The hash chain recomputed, and the Merkle tree's state: how many events it covers, the
    newest signed tree head and whether the store still matches it."""

    chain: Verification
    tree_size: int
    head: TreeHead | None
    head_check: HeadVerification | None
    checked_at: datetime


def verify(ledger: LedgerApplication) -> VerifyReport:
    chain = ledger.admin.verify()
    log = ledger.transparency
    signed = log.latest_head()
    head_check = verify_against(ledger.admin, signed, None) if signed is not None else None
    return VerifyReport(chain, log.size(), signed, head_check, datetime.now(tz=UTC))


@dataclass(frozen=True)
class InclusionReport:
    """An event's inclusion proof, checked: its record hashes to its leaf, and the audit path
    leads from the leaf to the root of the newest signed head (or, with no head signed yet, of
    the tree as kept)."""

    position: int
    against: str
    tree_size: int
    root: str
    leaf_index: int
    leaf_hash: str
    path: list[str]
    ok: bool
    reason: str | None


def inclusion(ledger: LedgerApplication, position: int) -> InclusionReport:
    """`NotFoundError` when the position is not in the tree (or the tree is empty)."""
    log = ledger.transparency
    signed = log.latest_head()
    size = signed.tree_size if signed is not None else log.size()
    if size == 0:
        raise NotFoundError("the Merkle tree is empty: `ledger audit sign` (or the worker) extends it")
    proof = log.inclusion(position, size)  # never extends the tree: the console only reads
    root = bytes.fromhex(signed.root) if signed is not None else log.root(size)[1]
    leaf = merkle.leaf_hash(canonical_record(*record_from_json(proof["event"])))
    path = [bytes.fromhex(h) for h in proof["path"]]
    reason: str | None
    if leaf.hex() != proof["leaf_hash"]:
        ok, reason = False, "the event does not hash to its leaf"
    else:
        ok = merkle.verify_inclusion(proof["leaf_index"], size, leaf, path, root)
        reason = None if ok else "the audit path does not lead to the root"
    against = f"the signed tree head of {size} events" if signed is not None else f"the tree of {size} events"
    index, leaf_hex, hexes = proof["leaf_index"], proof["leaf_hash"], proof["path"]
    return InclusionReport(position, against, size, root.hex(), index, leaf_hex, hexes, ok, reason)
