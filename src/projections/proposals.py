"""Proposals with their votes, live tallies and results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from sqlalchemy import BigInteger, Boolean, Column, Connection, Integer, String, Table, Text, select

from ledger.domain.proposal import Proposal, quorum_weight
from projections.batch import Batch
from projections.schema import Exact, UtcDateTime, metadata

proposals = Table(
    "rm_proposals",
    metadata,
    Column("proposal_id", String(36), primary_key=True),
    Column("asset_id", String(32), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("options", Text, nullable=False),
    Column("quorum_bps", Integer, nullable=False),
    Column("closes_at", UtcDateTime),
    Column("snapshot_position", BigInteger, nullable=False),
    Column("supply_at_snapshot", Exact, nullable=False),
    Column("status", String(16), nullable=False),
    Column("quorum_reached", Boolean),
    Column("result", String(100)),
)

votes = Table(
    "rm_votes",
    metadata,
    Column("proposal_id", String(36), primary_key=True),
    Column("investor_id", String(64), primary_key=True),
    Column("option", String(100), nullable=False),
    Column("weight", Exact, nullable=False),
    Column("position", BigInteger, nullable=False),
)


class ProposalsView:
    name = "proposals"

    def __init__(self, tables: dict[str, Table]) -> None:
        self.proposals = tables["rm_proposals"]
        self.votes = tables["rm_votes"]

    def load(self, conn: Connection) -> None:
        """Keeps nothing in memory."""

    def flush(self, batch: Batch) -> None:
        """Every row is written as its event is processed."""

    @singledispatchmethod
    def process_event(self, event: Any, batch: Batch) -> None:
        """Events this view does not show only advance its position."""

    @process_event.register
    def _(self, event: Proposal.Opened, batch: Batch) -> None:
        batch.insert(
            self.proposals,
            {
                "proposal_id": str(event.originator_id),
                "asset_id": event.asset_id,
                "title": event.title,
                "options": json.dumps(event.options),
                "quorum_bps": event.quorum_bps,
                "closes_at": event.closes_at,
                "snapshot_position": batch.position,
                "supply_at_snapshot": event.supply_at_snapshot,
                "status": "open",
                "quorum_reached": None,
                "result": None,
            },
        )

    @process_event.register
    def _(self, event: Proposal.VoteCast, batch: Batch) -> None:
        batch.insert(
            self.votes,
            {
                "proposal_id": str(event.originator_id),
                "investor_id": event.investor_id,
                "option": event.option,
                "weight": event.weight,
                "position": batch.position,
            },
        )

    @process_event.register
    def _(self, event: Proposal.Closed, batch: Batch) -> None:
        batch.update(
            self.proposals,
            {"proposal_id": str(event.originator_id)},
            {"status": "closed", "quorum_reached": event.quorum_reached, "result": event.result},
        )


@dataclass(frozen=True)
class ProposalRecord:
    proposal_id: str
    asset_id: str
    title: str
    options: list[str]
    quorum_bps: int
    closes_at: datetime | None
    status: str
    snapshot_position: int
    supply_at_snapshot: int
    tally: dict[str, int]
    votes_cast_weight: int
    quorum_reached: bool
    result: str | None


def proposal_record(conn: Connection, proposal_id: str) -> ProposalRecord | None:
    row = conn.execute(select(proposals).where(proposals.c.proposal_id == proposal_id)).first()
    if row is None:
        return None
    options = json.loads(row.options)
    tally = dict.fromkeys(options, 0)
    for vote in conn.execute(
        select(votes.c.option, votes.c.weight).where(votes.c.proposal_id == proposal_id)
    ):
        tally[vote.option] += vote.weight
    cast = sum(tally.values())
    reached = cast >= quorum_weight(row.supply_at_snapshot, row.quorum_bps)
    return ProposalRecord(
        row.proposal_id,
        row.asset_id,
        row.title,
        options,
        row.quorum_bps,
        row.closes_at,
        row.status,
        row.snapshot_position,
        row.supply_at_snapshot,
        tally,
        cast,
        reached if row.quorum_reached is None else row.quorum_reached,
        row.result,
    )


@dataclass(frozen=True)
class ProposalSummary:
    proposal_id: str
    asset_id: str
    title: str
    options: list[str]
    quorum_bps: int
    closes_at: datetime | None
    status: str
    snapshot_position: int
    supply_at_snapshot: int
    quorum_reached: bool | None
    result: str | None


def proposals_page(
    conn: Connection, asset_id: str, after: int, limit: int
) -> tuple[list[ProposalSummary], bool]:
    """Up to `limit` proposals on an asset created after position `after`, in the order created,
    and whether more follow (their tallies are in each proposal's own record)."""
    p = proposals.c
    rows = conn.execute(
        select(
            p.proposal_id,
            p.asset_id,
            p.title,
            p.options,
            p.quorum_bps,
            p.closes_at,
            p.status,
            p.snapshot_position,
            p.supply_at_snapshot,
            p.quorum_reached,
            p.result,
        )
        .where(p.asset_id == asset_id, p.snapshot_position > after)
        .order_by(p.snapshot_position)
        .limit(limit + 1)
    ).all()
    page = [ProposalSummary(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows[:limit]]
    return page, len(rows) > limit
