"""Writers racing on the same asset never both spend the same tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import InsufficientBalanceError, LedgerError
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.postgres


def race(actions: list[Callable[[], object]]) -> list[object]:
    """Starts the actions at the same instant; returns each one's result or error."""
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except LedgerError as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def prepare(app: LedgerApplication) -> str:
    asset_id = open_asset(app)
    for investor_id in ("alice", "bob", "carol"):
        onboard(app, investor_id)
    return asset_id


@pytest.mark.parametrize("writers", ["one process", "two processes"])
def test_two_transfers_that_together_overspend_a_balance_never_both_succeed(
    pg_schema_url: str, writers: str
) -> None:
    first = LedgerApplication(store_env(pg_schema_url))
    second = first if writers == "one process" else LedgerApplication(store_env(pg_schema_url))
    asset_id = prepare(first)
    for _ in range(10):
        holding(first, asset_id, "alice", 10)
        results = race(
            [
                lambda: first.transfer(asset_id, "alice", "bob", 7),
                lambda: second.transfer(asset_id, "alice", "carol", 7),
            ]
        )
        succeeded = [r for r in results if not isinstance(r, LedgerError)]
        rejected = [r for r in results if isinstance(r, LedgerError)]
        assert len(succeeded) == 1, results
        assert [type(r) for r in rejected] == [InsufficientBalanceError]
        balances = first.get_asset(asset_id).balances
        assert balances["alice"] == 3
        assert sum(balances.values()) == first.get_asset(asset_id).total_supply
        first.redeem(asset_id, "alice", 3)
    assert first.admin.verify().ok
    if second is not first:
        second.close()
    first.close()


def test_many_concurrent_clients_keep_supply_and_chain_intact(pg_schema_url: str) -> None:
    app = LedgerApplication(store_env(pg_schema_url))
    asset_id = prepare(app)
    holding(app, asset_id, "alice", 100)
    holding(app, asset_id, "bob", 100)
    pairs = [("alice", "bob"), ("bob", "alice"), ("alice", "carol"), ("bob", "carol")] * 4
    results = race([lambda a=a, b=b: app.transfer(asset_id, a, b, 9) for a, b in pairs])
    accepted = [r for r in results if not isinstance(r, LedgerError)]
    asset = app.get_asset(asset_id)
    assert sum(asset.balances.values()) == asset.total_supply == 200
    assert all(balance >= 0 for balance in asset.balances.values())
    assert len(accepted) + len(results) - len(accepted) == 16
    positions = sorted(r.position for r in accepted)  # type: ignore[attr-defined]
    assert len(set(positions)) == len(positions)
    assert app.admin.verify().ok
    app.close()
