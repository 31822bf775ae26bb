"""The Proposal aggregate: a holders' vote weighted by balances at the snapshot."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from eventsourcing.domain import Aggregate

from ledger.domain.quantity import Count
from ledger.errors import (
    AlreadyVotedError,
    InvalidOptionError,
    NoVotingPowerError,
    ProposalClosedError,
)

OPEN, CLOSED = "open", "closed"
NO_QUORUM, TIED = "no_quorum", "tied"


def quorum_weight(supply: int, quorum_bps: int) -> int:
    """The weight votes must carry: `ceil(supply * quorum_bps / 10000)`."""
    return -(-supply * quorum_bps // 10_000)


class Proposal(Aggregate):
    """A question put to the holders of an asset; weights are the balances at creation."""

    class Opened(Aggregate.Created):
        asset_id: str
        title: str
        options: list[str]
        quorum_bps: Count
        closes_at: datetime | None
        asset_version: int
        supply_at_snapshot: int

    def __init__(
        self,
        asset_id: str,
        title: str,
        options: list[str],
        quorum_bps: int,
        closes_at: datetime | None,
        asset_version: int,
        supply_at_snapshot: int,
    ) -> None:
        self.asset_id = asset_id
        self.title = title
        self.options = list(options)
        self.quorum_bps = quorum_bps
        self.closes_at = closes_at
        self.asset_version = asset_version
        self.supply_at_snapshot = supply_at_snapshot
        self.status = OPEN
        self.votes: dict[str, tuple[str, int]] = {}
        self.result: str | None = None

    @classmethod
    def open(
        cls,
        asset_id: str,
        title: str,
        options: list[str],
        quorum_bps: int,
        closes_at: datetime | None,
        asset_version: int,
        supply_at_snapshot: int,
    ) -> Proposal:
        return cls._create(
            cls.Opened,
            id=uuid4(),
            asset_id=asset_id,
            title=title,
            options=options,
            quorum_bps=quorum_bps,
            closes_at=closes_at,
            asset_version=asset_version,
            supply_at_snapshot=supply_at_snapshot,
        )

    def is_closed(self, now: datetime) -> bool:
        return self.status == CLOSED or (self.closes_at is not None and now >= self.closes_at)

    def cast_vote(self, investor_id: str, option: str, weight: int, now: datetime) -> None:
        if weight <= 0:
            raise NoVotingPowerError(f"investor {investor_id} held nothing at the snapshot")
        if investor_id in self.votes:
            raise AlreadyVotedError(f"investor {investor_id} has already voted")
        if self.is_closed(now):
            raise ProposalClosedError(f"proposal {self.id} is closed")
        if option not in self.options:
            raise InvalidOptionError(f"{option!r} is not one of {self.options}")
        self.trigger_event(self.VoteCast, investor_id=investor_id, option=option, weight=weight)

    class VoteCast(Aggregate.Event):
        investor_id: str
        option: str
        weight: int

        def apply(self, proposal: Proposal) -> None:
            proposal.votes[self.investor_id] = (self.option, self.weight)

    def tally(self) -> dict[str, int]:
        counts = dict.fromkeys(self.options, 0)
        for option, weight in self.votes.values():
            counts[option] += weight
        return counts

    def close(self) -> None:
        """Closes the vote and fixes its result: an option, `no_quorum` or `tied`."""
        if self.status == CLOSED:
            raise ProposalClosedError(f"proposal {self.id} is already closed")
        tally = self.tally()
        cast = sum(tally.values())
        quorum_reached = cast >= quorum_weight(self.supply_at_snapshot, self.quorum_bps)
        ranked = sorted(tally.values(), reverse=True)
        if not quorum_reached:
            result = NO_QUORUM
        elif len(ranked) > 1 and ranked[0] == ranked[1]:
            result = TIED
        else:
            result = max(tally, key=lambda option: tally[option])
        self.trigger_event(
            self.Closed, tally=tally, votes_cast_weight=cast, quorum_reached=quorum_reached, result=result
        )

    class Closed(Aggregate.Event):
        tally: dict[str, int]
        votes_cast_weight: int
        quorum_reached: bool
        result: str

        def apply(self, proposal: Proposal) -> None:
            proposal.status = CLOSED
            proposal.result = self.result
