"""Vote rules (SPEC 4.5): who may vote, when, for what, and how the tally decides.

Given a proposal built from its own events, when a vote is cast or the proposal
closed, then the new events, or the rejection's `code` with nothing recorded.
Weights are handed in: the application reads them from the cap table at the snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction
from math import ceil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.proposal import Proposal, quorum_weight
from tests.unit.test_asset_rules import T0, only_event, rejected

YES_NO = ["yes", "no"]


def new_proposal(
    options: list[str] = YES_NO, quorum_bps: int = 5_000, supply: int = 100, closes_at: datetime | None = None
) -> Proposal:
    proposal = Proposal.open(
        "TOLL-JKT-01",
        "Extend the concession?",
        options,
        quorum_bps,
        closes_at,
        asset_version=7,
        supply_at_snapshot=supply,
    )
    proposal.collect_events()
    return proposal


def voted(proposal: Proposal, *votes: tuple[str, str, int]) -> Proposal:
    for investor_id, option, weight in votes:
        proposal.cast_vote(investor_id, option, weight, T0)
    proposal.collect_events()
    return proposal


def closed(proposal: Proposal) -> Proposal:
    proposal.close()
    proposal.collect_events()
    return proposal


# ----- casting votes -----


def test_a_vote_is_recorded_with_the_voters_weight() -> None:
    proposal = new_proposal()
    proposal.cast_vote("alice", "yes", 60, T0)
    event = only_event(proposal)
    assert isinstance(event, Proposal.VoteCast)
    assert (event.investor_id, event.option, event.weight) == ("alice", "yes", 60)
    assert proposal.votes == {"alice": ("yes", 60)}


@pytest.mark.parametrize("weight", [0, -1])
def test_a_vote_without_voting_power_is_rejected(weight: int) -> None:
    proposal = new_proposal()
    with rejected(proposal, "no_voting_power"):
        proposal.cast_vote("alice", "yes", weight, T0)


def test_voting_twice_is_rejected() -> None:
    proposal = voted(new_proposal(), ("alice", "yes", 60))
    with rejected(proposal, "already_voted"):
        proposal.cast_vote("alice", "no", 60, T0)


def test_voting_on_a_closed_proposal_is_rejected() -> None:
    proposal = closed(new_proposal())
    with rejected(proposal, "proposal_closed"):
        proposal.cast_vote("alice", "yes", 60, T0)


def test_voting_past_closes_at_is_rejected() -> None:
    proposal = new_proposal(closes_at=T0 + timedelta(hours=1))
    with rejected(proposal, "proposal_closed"):
        proposal.cast_vote("alice", "yes", 60, T0 + timedelta(hours=1, seconds=1))


def test_voting_before_closes_at_is_accepted() -> None:
    proposal = new_proposal(closes_at=T0 + timedelta(hours=1))
    proposal.cast_vote("alice", "yes", 60, T0 + timedelta(minutes=59))
    assert isinstance(only_event(proposal), Proposal.VoteCast)


def test_voting_for_an_option_not_on_the_ballot_is_rejected() -> None:
    proposal = new_proposal()
    with rejected(proposal, "invalid_option"):
        proposal.cast_vote("alice", "maybe", 60, T0)


@pytest.mark.parametrize(
    ("already", "close", "vote", "code"),
    [
        pytest.param(
            None, True, ("alice", "yes", 0), "no_voting_power", id="no_voting_power>proposal_closed"
        ),
        pytest.param(
            None, False, ("alice", "maybe", 0), "no_voting_power", id="no_voting_power>invalid_option"
        ),
        pytest.param(
            ("alice", "yes", 60),
            True,
            ("alice", "no", 60),
            "already_voted",
            id="already_voted>proposal_closed",
        ),
        pytest.param(
            ("alice", "yes", 60),
            False,
            ("alice", "maybe", 60),
            "already_voted",
            id="already_voted>invalid_option",
        ),
        pytest.param(
            None, True, ("alice", "maybe", 60), "proposal_closed", id="proposal_closed>invalid_option"
        ),
    ],
)
def test_when_several_vote_rules_fail_the_first_listed_wins(
    already: tuple[str, str, int] | None, close: bool, vote: tuple[str, str, int], code: str
) -> None:
    proposal = new_proposal()
    if already is not None:
        voted(proposal, already)
    if close:
        closed(proposal)
    investor_id, option, weight = vote
    with rejected(proposal, code):
        proposal.cast_vote(investor_id, option, weight, T0)


def test_past_closes_at_beats_an_invalid_option() -> None:
    proposal = new_proposal(closes_at=T0)
    with rejected(proposal, "proposal_closed"):
        proposal.cast_vote("alice", "maybe", 60, T0 + timedelta(seconds=1))


# ----- closing and the tally -----


def test_closing_records_the_tally_and_the_winning_option() -> None:
    proposal = voted(new_proposal(), ("alice", "yes", 40), ("bob", "no", 15), ("carol", "yes", 5))
    proposal.close()
    event = only_event(proposal)
    assert isinstance(event, Proposal.Closed)
    assert event.tally == {"yes": 45, "no": 15}
    assert (event.votes_cast_weight, event.quorum_reached, event.result) == (60, True, "yes")
    assert (proposal.status, proposal.result) == ("closed", "yes")


def test_options_nobody_voted_for_are_tallied_at_zero() -> None:
    proposal = voted(new_proposal(options=["a", "b", "c"]), ("alice", "b", 60))
    proposal.close()
    event = only_event(proposal)
    assert (event.tally, event.result) == ({"a": 0, "b": 60, "c": 0}, "b")


@pytest.mark.parametrize(
    ("supply", "quorum_bps", "votes", "result"),
    [
        pytest.param(100, 5_000, [("yes", 30), ("no", 19)], "no_quorum", id="one unit short of quorum"),
        pytest.param(100, 5_000, [("yes", 30), ("no", 20)], "yes", id="exactly at quorum"),
        pytest.param(101, 5_000, [("yes", 50)], "no_quorum", id="quorum is rounded up (50.5 -> 51)"),
        pytest.param(101, 5_000, [("yes", 51)], "yes", id="rounded-up quorum reached"),
        pytest.param(100, 5_000, [("yes", 30), ("no", 30)], "tied", id="top weights equal"),
        pytest.param(100, 9_000, [("yes", 30), ("no", 30)], "no_quorum", id="no quorum beats tied"),
        pytest.param(100, 0, [("no", 1)], "no", id="zero quorum"),
        pytest.param(100, 10_000, [("yes", 99)], "no_quorum", id="full quorum needs every unit"),
    ],
)
def test_the_result_is_the_strictly_heaviest_option_once_quorum_is_reached(
    supply: int, quorum_bps: int, votes: list[tuple[str, int]], result: str
) -> None:
    proposal = new_proposal(supply=supply, quorum_bps=quorum_bps)
    for number, (option, weight) in enumerate(votes):
        proposal.cast_vote(f"investor-{number}", option, weight, T0)
    proposal.collect_events()
    proposal.close()
    event = only_event(proposal)
    assert event.result == result
    assert event.quorum_reached is (result != "no_quorum")


@pytest.mark.parametrize(
    ("weights", "result"),
    [
        ({"a": 30, "b": 30, "c": 10}, "tied"),
        ({"a": 30, "b": 10, "c": 10}, "a"),
        ({"a": 5, "b": 10, "c": 10}, "tied"),
    ],
)
def test_only_a_tie_at_the_top_is_a_tie(weights: dict[str, int], result: str) -> None:
    proposal = new_proposal(options=list(weights), quorum_bps=1)
    for option, weight in weights.items():
        proposal.cast_vote(f"voter-{option}", option, weight, T0)
    proposal.collect_events()
    proposal.close()
    assert only_event(proposal).result == result


def test_closing_a_closed_proposal_is_rejected() -> None:
    proposal = closed(voted(new_proposal(), ("alice", "yes", 60)))
    with rejected(proposal, "proposal_closed"):
        proposal.close()


def test_a_proposal_past_closes_at_can_still_be_closed_with_its_tally() -> None:
    proposal = voted(new_proposal(closes_at=T0 + timedelta(minutes=1)), ("alice", "no", 70))
    proposal.close()
    assert only_event(proposal).result == "no"


@pytest.mark.parametrize(
    ("supply", "quorum_bps", "weight"),
    [
        (0, 5_000, 0),
        (100, 0, 0),
        (100, 5_000, 50),
        (101, 5_000, 51),
        (3, 1, 1),
        (10**30, 3_333, 3_333 * 10**26),
    ],
)
def test_quorum_weight_examples(supply: int, quorum_bps: int, weight: int) -> None:
    assert quorum_weight(supply, quorum_bps) == weight


@given(
    supply=st.integers(min_value=0, max_value=10**36), quorum_bps=st.integers(min_value=0, max_value=10_000)
)
def test_quorum_weight_is_the_ceiling_of_the_quorum_share_of_the_supply(supply: int, quorum_bps: int) -> None:
    assert quorum_weight(supply, quorum_bps) == ceil(Fraction(supply * quorum_bps, 10_000))
