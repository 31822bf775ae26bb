"""Property tests of portfolio analytics (SPEC 4.8): random histories of investments, transfers,
redemptions, freezes, distributions and payments, valuations (some dated earlier than the one in
force) and days passing, projected after every command.

Then, at every position a portfolio was read:
- `total_return == value + dividends_paid - invested_amount` and `unrealized_gain == value -
  invested_amount`, exactly, per position and in total; the totals' money is the sum of the
  positions'; rates are integers or None;
- each position's quantity and frozen are the asset's balance and frozen at that point;
- `as_of` that position, read at the end, equals the portfolio read then;
- a full replay ends with the same portfolios (a fresh runner, which reloads the view's memory
  from its tables, also takes over now and then).

On SQLite and, with fewer examples, on PostgreSQL (a fresh schema per example).

Event timestamps follow the test's clock here (the library's clock is patched), so that flows
fall on many days and the XIRR and yields are computed, not only None.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

import eventsourcing.domain
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import LedgerError
from projections.migrate import upgrade
from projections.portfolio import Portfolio, Totals, portfolio_view
from projections.replay import replay
from projections.runner import ProjectionRunner
from projections.schema import engine_for
from tests.conftest import FakeClock
from tests.integration.test_projection_properties import (
    BACKENDS,
    STORES,
    hypothesis_settings,
    prepare_backend,
)
from tests.support import ASSET_TERMS, onboard

pytestmark = pytest.mark.integration

INVESTORS = ("ann", "ben", "cat")
ASSETS = {"TOLL-1": (0, 100_000), "WATER-2": (2, 250_000)}  # decimals, unit price
MONEY = ("invested_amount", "dividends_paid", "dividends_pending", "value", "unrealized_gain", "total_return")

investor = st.sampled_from(INVESTORS)
asset = st.sampled_from(sorted(ASSETS))
operation = st.one_of(
    st.tuples(st.just("invest"), investor, asset, st.integers(100_000, 3_000_000)),
    st.tuples(st.just("transfer"), asset, investor, investor, st.integers(1, 400)),
    st.tuples(st.just("redeem"), asset, investor, st.integers(1, 400)),
    st.tuples(st.just("freeze"), asset, investor, st.integers(1, 50)),
    st.tuples(st.just("distribute"), asset, st.integers(1, 2_000_000), st.booleans()),
    st.tuples(st.just("pay"), st.integers(0, 5), st.one_of(st.none(), investor)),
    st.tuples(st.just("value"), asset, st.integers(1, 400_000), st.integers(0, 48)),
    st.tuples(st.just("days"), st.integers(1, 200)),
    st.tuples(st.just("days"), st.integers(1, 30)),
    st.tuples(st.just("reload")),  # a fresh runner, which loads the views' memory from their tables
)


@dataclass
class World:
    app: LedgerApplication
    runner: ProjectionRunner
    clock: FakeClock
    distributions: list[str]


@contextmanager
def world(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with STORES[backend]() as url, monkeypatch.context() as patch:
        clock = FakeClock()
        patch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", clock)
        app = LedgerApplication(store_env(url), clock=clock)
        engine = engine_for(url)
        try:
            upgrade(engine)
            for asset_id, (decimals, price) in ASSETS.items():
                terms = {**ASSET_TERMS, "asset_id": asset_id, "decimals": decimals, "unit_price": price}
                app.register_asset(terms)
                app.approve_asset(asset_id)
                app.set_offering(asset_id, True)
            for investor_id in INVESTORS:
                onboard(app, investor_id)
            yield World(app, ProjectionRunner(app, engine, batch_size=5), clock, [])
        finally:
            app.close()
            engine.dispose()


def run(w: World, op: tuple[Any, ...]) -> None:
    app, kind = w.app, op[0]
    if kind == "invest":
        placed = app.place_investment(op[1], op[2], op[3])
        app.confirm_payment(placed.result["investment_id"], "pay")
    elif kind == "transfer":
        app.transfer(op[1], op[2], op[3], op[4], forced=True)
    elif kind == "redeem":
        app.redeem(op[1], op[2], op[3])
    elif kind == "freeze":
        app.freeze_tokens(op[1], op[2], op[3])
    elif kind == "distribute":
        record = app.admin.head_position() - 3 if op[3] else None
        w.distributions.append(app.declare_distribution(op[1], op[2], record).result["distribution_id"])
    elif kind == "pay" and w.distributions:
        app.pay_distribution(w.distributions[op[1] % len(w.distributions)], op[2])
    elif kind == "value":
        when = w.clock.now - timedelta(hours=op[3])
        created = app.get_asset(op[1]).created_on
        app.record_valuation(op[1], op[2], max(when, created), "appraisal")
    elif kind == "days":
        w.clock.advance(op[1] * 86_400)
    elif kind == "reload":
        w.runner = ProjectionRunner(w.app, w.runner.engine, batch_size=3)


def check_identities(view: Portfolio) -> None:
    for p in view.positions:
        assert p.total_return == p.value + p.dividends_paid - p.invested_amount
        assert p.unrealized_gain == p.value - p.invested_amount
        assert min(p.quantity, p.frozen, p.invested_amount, p.value, p.dividends_paid) >= 0
    totals: Totals = view.totals
    for name in MONEY:
        assert getattr(totals, name) == sum(getattr(p, name) for p in view.positions), name
    assert totals.total_return == totals.value + totals.dividends_paid - totals.invested_amount
    for rate in (totals.xirr_bps, totals.dividend_yield_bps, *(p.xirr_bps for p in view.positions)):
        assert rate is None or type(rate) is int
    assert all(type(getattr(totals, f.name)) is int for f in fields(totals) if f.name in MONEY)


@pytest.mark.parametrize("backend", BACKENDS)
def test_portfolio_identities_hold_and_as_of_equals_the_portfolio_read_then(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_backend(backend)

    @hypothesis_settings(backend, sqlite_examples=25, postgres_examples=5)
    @given(ops=st.lists(operation, min_size=1, max_size=30))
    def check(ops: list[tuple[Any, ...]]) -> None:
        with world(backend, monkeypatch) as w:
            seen: list[tuple[str, Portfolio]] = []
            for op in ops:
                with contextlib.suppress(LedgerError):
                    run(w, op)
                w.runner.catch_up()
                with w.runner.engine.connect() as conn:
                    for investor_id in INVESTORS:
                        view = portfolio_view(conn, investor_id)
                        check_identities(view)
                        shown = {p.asset_id: (p.quantity, p.frozen) for p in view.positions}
                        for asset_id in ASSETS:
                            held = w.app.get_asset(asset_id)
                            expected = (held.balance_of(investor_id), held.frozen_of(investor_id))
                            assert shown.get(asset_id, (0, 0)) == expected
                        seen.append((investor_id, view))
            with w.runner.engine.connect() as conn:
                for investor_id, then in seen:
                    assert portfolio_view(conn, investor_id, as_of=then.as_of_position) == then
            assert replay(w.app, w.runner.engine) == w.app.admin.head_position()
            with w.runner.engine.connect() as conn:
                for investor_id, then in seen[-len(INVESTORS) :]:
                    assert portfolio_view(conn, investor_id) == then, "a replay gives the same portfolios"

    check()
