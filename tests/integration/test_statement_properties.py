"""Property test of statements: random histories (the command sequences of
`test_projection_properties`: investments, payments, transfers forced or not, redemptions, token
and address freezes, distributions and payments, runner restarts, ...), projected incrementally.

Then for each investor and asset:
- the statement's last balance (and frozen quantity) equals the portfolio's quantity (and frozen)
  and the write side's balance;
- the movements, signed by their kind, sum to that quantity, and each row's balance is the one
  before it moved by its own quantity;
- the asset's statement is exactly the investors' statements of that asset, in position order.

On SQLite and, with fewer examples, on PostgreSQL (a fresh schema per example).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import example, given
from sqlalchemy import Connection

from projections.portfolio import portfolio_view
from projections.statements import BALANCE_SIGN, Movement, StatementFilter, whole_statement
from tests.integration.test_projection_properties import (
    ALPHA,
    ASSET_IDS,
    BACKENDS,
    INVESTOR_IDS,
    Op,
    batch_sizes,
    hypothesis_settings,
    operations,
    prepare_backend,
    world,
)

pytestmark = pytest.mark.integration

# Forced operations that take frozen tokens (rare in random sequences): alice redeems all of
# her ALPHA with half of it frozen; bob's fully frozen ALPHA is force-transferred to carol.
TAKES_FROZEN: list[Op] = [
    ("freeze", ALPHA, "alice", 50),
    ("redeem", ALPHA, "alice", 100),
    ("freeze", ALPHA, "bob", 100),
    ("transfer", ALPHA, "bob", "carol", 100, True),
    ("declare", ALPHA, 1000, None),
    ("pay", 0, "carol"),
]


def read(conn: Connection, which: StatementFilter) -> list[Movement]:
    return [m for chunk in whole_statement(conn, which, chunk=3) for m in chunk]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_statement_ends_at_the_portfolio_and_its_movements_sum_to_it(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_backend(backend)

    @hypothesis_settings(backend, sqlite_examples=30, postgres_examples=5)
    @given(ops=operations, batch_size=batch_sizes)
    @example(ops=TAKES_FROZEN, batch_size=2)
    def check(ops: list[Op], batch_size: int) -> None:
        with world(backend, batch_size, None, monkeypatch) as w:
            w.run(ops)
            with w.engine.connect() as conn:
                by_asset: dict[str, list[Movement]] = defaultdict(list)
                for investor_id in INVESTOR_IDS:
                    rows = read(conn, StatementFilter(investor_id=investor_id))
                    assert [(m.position, m.asset_id) for m in rows] == sorted(
                        {(m.position, m.asset_id) for m in rows}
                    )
                    portfolio = {p.asset_id: p for p in portfolio_view(conn, investor_id).positions}
                    for asset_id in ASSET_IDS:
                        own = [m for m in rows if m.asset_id == asset_id]
                        by_asset[asset_id].extend(own)
                        balance = 0
                        for m in own:
                            assert m.investor_id == investor_id
                            balance += BALANCE_SIGN.get(m.kind, 0) * m.quantity
                            assert m.balance_after == balance, m
                        held = w.app.get_asset(asset_id)
                        expected = (held.balance_of(investor_id), held.frozen_of(investor_id))
                        last = (own[-1].balance_after, own[-1].frozen_after) if own else (0, 0)
                        assert last == expected
                        position = portfolio.get(asset_id)
                        shown = (position.quantity, position.frozen) if position else (0, 0)
                        assert shown == last
                for asset_id in ASSET_IDS:
                    whole = read(conn, StatementFilter(asset_id=asset_id))
                    assert whole == sorted(by_asset[asset_id], key=lambda m: (m.position, m.investor_id))

    check()
