"""Pro-rata allocation of a distribution by the largest-remainder method (SPEC 4.4)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.distribution import Distribution, allocate
from ledger.errors import InvalidStateError
from tests.unit.test_asset_rules import new_events, rejected

AMOUNTS = st.integers(min_value=0, max_value=10**24)
HOLDINGS = st.dictionaries(
    keys=st.text(alphabet="abcdefghij0123456789_.-", min_size=1, max_size=8),
    values=st.integers(min_value=1, max_value=10**18),
    min_size=1,
    max_size=30,
)
# Few distinct quantities make equal remainders, where the tie-break decides.
TIED_HOLDINGS = st.dictionaries(
    keys=st.text(alphabet="abcxyz", min_size=1, max_size=3),
    values=st.sampled_from([1, 2, 3]),
    min_size=2,
    max_size=12,
)


def exact_shares(amount: int, holdings: dict[str, int]) -> dict[str, Fraction]:
    total = sum(holdings.values())
    return {investor_id: Fraction(amount * quantity, total) for investor_id, quantity in holdings.items()}


@pytest.mark.parametrize(
    ("amount", "holdings", "shares"),
    [
        pytest.param(1000, {"alice": 60, "bob": 40}, {"alice": 600, "bob": 400}, id="exact split"),
        pytest.param(
            100,
            {"a": 1, "b": 1, "c": 1},
            {"a": 34, "b": 33, "c": 33},
            id="one leftover unit, tie to lowest id",
        ),
        pytest.param(
            10,
            {"alice": 1, "bob": 2, "carol": 3},
            {"alice": 2, "bob": 3, "carol": 5},
            id="largest remainders",
        ),
        pytest.param(
            7, {"whale": 999_999, "minnow": 1}, {"whale": 7, "minnow": 0}, id="tiny holder gets nothing"
        ),
        pytest.param(0, {"alice": 5, "bob": 7}, {"alice": 0, "bob": 0}, id="nothing to share"),
        pytest.param(5, {"solo": 3}, {"solo": 5}, id="single holder takes all"),
    ],
)
def test_allocation_examples(amount: int, holdings: dict[str, int], shares: dict[str, int]) -> None:
    assert allocate(amount, holdings) == shares


def test_ties_between_equal_remainders_go_to_the_lowest_investor_id() -> None:
    holdings = {"carol": 1, "alice": 1, "dave": 1, "bob": 1}
    assert allocate(2, holdings) == {"alice": 1, "bob": 1, "carol": 0, "dave": 0}
    assert allocate(3, holdings) == {"alice": 1, "bob": 1, "carol": 1, "dave": 0}


def test_investor_ids_are_compared_as_text() -> None:
    assert allocate(1, {"b": 1, "B": 1, "a": 1}) == {"B": 1, "a": 0, "b": 0}


@pytest.mark.parametrize("holdings", [{}, {"alice": 0}, {"alice": 0, "bob": 0}])
def test_allocating_without_holders_is_invalid_state(holdings: dict[str, int]) -> None:
    with pytest.raises(InvalidStateError) as info:
        allocate(100, holdings)
    assert info.value.code == "invalid_state"


def test_declaring_a_distribution_without_holders_is_invalid_state() -> None:
    with pytest.raises(InvalidStateError):
        Distribution.declare("TOLL-JKT-01", 100, None, 1, {})


@given(amount=AMOUNTS, holdings=HOLDINGS)
def test_entitlements_sum_exactly_to_the_amount(amount: int, holdings: dict[str, int]) -> None:
    shares = allocate(amount, holdings)
    assert set(shares) == set(holdings)
    assert sum(shares.values()) == amount


@given(amount=AMOUNTS, holdings=HOLDINGS)
def test_each_entitlement_is_less_than_one_unit_from_the_exact_share(
    amount: int, holdings: dict[str, int]
) -> None:
    shares = allocate(amount, holdings)
    for investor_id, exact in exact_shares(amount, holdings).items():
        assert abs(shares[investor_id] - exact) < 1


@given(amount=AMOUNTS, holdings=st.one_of(HOLDINGS, TIED_HOLDINGS))
def test_leftover_units_go_to_the_largest_remainders_then_the_lowest_ids(
    amount: int, holdings: dict[str, int]
) -> None:
    shares = allocate(amount, holdings)
    exact = exact_shares(amount, holdings)
    remainder = {i: exact[i] - (exact[i].numerator // exact[i].denominator) for i in holdings}
    rounded_up = {i for i in holdings if shares[i] > exact[i]}
    rounded_down = set(holdings) - rounded_up
    for up in rounded_up:
        for down in rounded_down:
            assert (remainder[up], down) > (remainder[down], up), (up, down)


@given(amount=AMOUNTS, holdings=st.one_of(HOLDINGS, TIED_HOLDINGS), seed=st.randoms())
def test_the_order_of_the_holdings_does_not_change_the_allocation(
    amount: int, holdings: dict[str, int], seed: random.Random
) -> None:
    items = list(holdings.items())
    seed.shuffle(items)
    shuffled = dict(items)
    assert allocate(amount, shuffled) == allocate(amount, holdings)


@given(amount=AMOUNTS, holdings=HOLDINGS)
def test_a_declared_distribution_records_the_allocation_as_its_entitlements(
    amount: int, holdings: dict[str, int]
) -> None:
    distribution = Distribution.declare("TOLL-JKT-01", amount, 42, 3, holdings)
    (declared,) = new_events(distribution)
    assert isinstance(declared, Distribution.Declared)
    assert declared.entitlements == allocate(amount, holdings)
    assert (declared.record_position, declared.asset_version) == (42, 3)


# ----- paying entitlements -----


def declared(holdings: dict[str, int]) -> Distribution:
    distribution = Distribution.declare("TOLL-JKT-01", 1_000, None, 3, holdings)
    distribution.collect_events()
    return distribution


def test_paying_without_an_investor_pays_every_unpaid_entitlement() -> None:
    distribution = declared({"bob": 1, "alice": 1, "carol": 2})
    assert distribution.pay("bob") == ["bob"]
    assert distribution.pay(None) == ["alice", "carol"]
    events = new_events(distribution)
    assert [(type(e), e.investor_ids) for e in events] == [
        (Distribution.EntitlementsPaid, ["bob"]),
        (Distribution.EntitlementsPaid, ["alice", "carol"]),
    ]
    assert distribution.paid == {"alice": True, "bob": True, "carol": True}


@pytest.mark.parametrize("investor_id", [None, "alice"])
def test_paying_twice_is_invalid_state(investor_id: str | None) -> None:
    distribution = declared({"alice": 1, "bob": 1})
    distribution.pay(None)
    distribution.collect_events()
    with rejected(distribution, "invalid_state"):
        distribution.pay(investor_id)


def test_paying_an_investor_without_an_entitlement_is_not_found() -> None:
    distribution = declared({"alice": 1})
    with rejected(distribution, "not_found"):
        distribution.pay("mallory")
