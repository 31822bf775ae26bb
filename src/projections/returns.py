"""Rates of return in integer basis points: the money-weighted return (XIRR) of dated cash flows,
and a yield over a trailing window. Money is exact; only the XIRR solver works in floating point
(pyxirr), and its answer is rounded half-even to basis points before it leaves this module."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pyxirr

BPS = 10_000
YEAR_DAYS = 365
MAX_BPS = 2**53 - 1  # served as a plain JSON number; a rate beyond it is no answer


_date = functools.lru_cache(maxsize=8192)(date.fromordinal)


def half_even_bps(numerator: int, denominator: int) -> int:
    """`numerator / denominator` in basis points, rounded half to even, exactly."""
    return round(Fraction(numerator * BPS, denominator))


def xirr_bps(flows: Iterable[tuple[int, int]]) -> int | None:
    """The annual money-weighted return of `(day ordinal, amount)` flows (negative: money put in,
    positive: money out to the investor), flows of one day netted; None when it is undefined
    (fewer than two days, no change of sign) or the solver does not converge."""
    by_day: dict[int, int] = {}
    for day, amount in flows:
        by_day[day] = by_day.get(day, 0) + amount
    days = sorted(d for d, amount in by_day.items() if amount != 0)
    amounts = [by_day[d] for d in days]
    if len(days) < 2 or all(a > 0 for a in amounts) or all(a < 0 for a in amounts):
        return None
    try:
        rate = pyxirr.xirr([_date(d) for d in days], [float(a) for a in amounts])
    except (pyxirr.InvalidPaymentsError, ValueError, OverflowError, ArithmeticError):
        return None
    if rate is None or not math.isfinite(rate):
        return None
    bps = round(Decimal(rate) * BPS)  # Decimal rounding is half to even
    return bps if abs(bps) <= MAX_BPS else None


def trailing_yield_bps(income: int, capital_days: int) -> int | None:
    """Income of the trailing year over the average capital of that year (`capital_days`: the
    capital held at the end of each of its 365 days, summed); None without capital."""
    if capital_days <= 0:
        return None
    return half_even_bps(income * YEAR_DAYS, capital_days)


def capital_days(steps: Iterable[tuple[int, int]], end: int) -> int:
    """Sum over the days `end - 364 .. end` of the capital at the end of each day, given the
    capital's changes as `(day ordinal, capital from that day on)` in day order."""
    start = end - YEAR_DAYS + 1
    total, day, capital = 0, start, 0
    for step_day, value in steps:
        if step_day > end:
            break
        if step_day > day:
            total += capital * (step_day - day)
            day = step_day
        capital = value
    return total + capital * (end + 1 - day)
