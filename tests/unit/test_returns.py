"""Rates of return (SPEC 4.8): XIRR in basis points rounded half to even, `null` when undefined;
a trailing yield over the year's average capital."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.returns import capital_days, half_even_bps, trailing_yield_bps, xirr_bps

D0 = date(2021, 1, 1).toordinal()  # 2021 is not a leap year: D0 + 365 is 2022-01-01


def npv(rate: Fraction, flows: list[tuple[int, int]]) -> float:
    first = min(day for day, _ in flows)
    return sum(amount / (1 + float(rate)) ** ((day - first) / 365) for day, amount in flows)


def test_ten_percent_after_exactly_a_year_is_1000_bps() -> None:
    assert xirr_bps([(D0, -1_000_000), (D0 + 365, 1_100_000)]) == 1000


def test_money_back_after_a_year_is_zero_and_a_loss_is_negative() -> None:
    assert xirr_bps([(D0, -500), (D0 + 365, 500)]) == 0
    assert xirr_bps([(D0, -1000), (D0 + 365, 900)]) == -1000


def test_flows_without_a_change_of_sign_have_no_xirr() -> None:
    assert xirr_bps([(D0, -1000), (D0 + 365, -100)]) is None
    assert xirr_bps([(D0, 1000), (D0 + 30, 100)]) is None


def test_too_few_flows_or_days_have_no_xirr() -> None:
    assert xirr_bps([]) is None
    assert xirr_bps([(D0, -1000)]) is None
    assert xirr_bps([(D0, -1000), (D0, 1100)]) is None  # one day: netted to one flow
    assert xirr_bps([(D0, -1000), (D0 + 10, 0), (D0, 1000)]) is None


@pytest.mark.parametrize(
    "flows",
    [
        # pyxirr's README: dates 2020-01-01, 2021-01-01, 2022-01-01 and amounts -1000, 750, 500
        [
            (date(2020, 1, 1).toordinal(), -1000),
            (date(2021, 1, 1).toordinal(), 750),
            (date(2022, 1, 1).toordinal(), 500),
        ],
        # Excel's XIRR documentation example
        [
            (date(2008, 1, 1).toordinal(), -10_000),
            (date(2008, 3, 1).toordinal(), 2_750),
            (date(2008, 10, 30).toordinal(), 4_250),
            (date(2009, 2, 15).toordinal(), 3_250),
            (date(2009, 4, 1).toordinal(), 2_750),
        ],
    ],
)
def test_published_examples_solve_to_the_nearest_basis_point(flows: list[tuple[int, int]]) -> None:
    bps = xirr_bps(flows)
    assert bps is not None
    # The value is a root to the basis point: the NPV changes sign within half a basis point of it.
    low, high = Fraction(2 * bps - 1, 20_000), Fraction(2 * bps + 1, 20_000)
    assert npv(low, flows) > 0 > npv(high, flows)


def test_excel_example_is_37_34_percent() -> None:
    flows = [
        (date(2008, 1, 1).toordinal(), -10_000),
        (date(2008, 3, 1).toordinal(), 2_750),
        (date(2008, 10, 30).toordinal(), 4_250),
        (date(2009, 2, 15).toordinal(), 3_250),
        (date(2009, 4, 1).toordinal(), 2_750),
    ]
    assert xirr_bps(flows) == 3734  # Excel: 0.373362535


@given(
    st.lists(st.tuples(st.integers(D0, D0 + 3650), st.integers(-(10**15), 10**15)), min_size=0, max_size=40)
)
def test_xirr_is_an_integer_or_none_and_never_raises(flows: list[tuple[int, int]]) -> None:
    result = xirr_bps(flows)
    assert result is None or type(result) is int


def test_basis_points_round_half_to_even() -> None:
    assert half_even_bps(1, 20_000) == 0  # 0.5 bp
    assert half_even_bps(3, 20_000) == 2  # 1.5 bp
    assert half_even_bps(5, 20_000) == 2  # 2.5 bp
    assert half_even_bps(-3, 20_000) == -2


def test_capital_days_sum_the_capital_at_the_end_of_each_day_of_the_year() -> None:
    end = D0 + 1000
    assert capital_days([], end) == 0
    assert capital_days([(end, 100)], end) == 100  # invested on the last day: one day
    assert capital_days([(D0, 100)], end) == 36_500  # held all year
    assert capital_days([(end - 9, 100), (end - 4, 300)], end) == 5 * 100 + 5 * 300
    assert capital_days([(end - 2, 100), (end - 2, 0)], end) == 0  # the day's last value counts
    assert capital_days([(end - 1, 100), (end + 5, 999)], end) == 200  # later steps are ignored


def test_a_year_of_dividends_over_the_years_capital() -> None:
    assert trailing_yield_bps(50, 1000 * 365) == 500  # 5%
    assert trailing_yield_bps(50, 0) is None
    assert trailing_yield_bps(0, 1000) == 0
