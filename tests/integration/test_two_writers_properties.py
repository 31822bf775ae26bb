"""Two writing processes on one PostgreSQL store are indistinguishable from one.

Random sequences of transfers, KYC decisions and pauses are sent, each command to one of
two `LedgerApplication`s on the same store (so each sometimes writes on a cache the other
has made stale, in real and in optimistic writer turns). The reference is the same
sequence sent to one application on an SQLite store: every command must have the same
outcome (its result or its error code) and the register must end in the same state. Turns
are optimistic as deployed (after a few quiet ones) or always. Commands go one at a time (a
batch of one each): mixed batches, large batches and lost connections are in
`test_optimistic_turns.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger import commit
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import LedgerError
from tests.conftest import require_postgres, scratch_schema_url
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.postgres

NAMES = ("alice", "bob", "carol")
START = 20
examples = itertools.count()

transfer = st.tuples(st.just("transfer"), st.sampled_from(NAMES), st.sampled_from(NAMES), st.integers(1, 12))
kyc = st.tuples(st.just("kyc"), st.sampled_from(NAMES), st.sampled_from(("approved", "rejected")))
pause = st.tuples(st.just("pause"), st.booleans())
# Runs of commands sent to one writer: short ones alternate the writers, long ones let a
# writer's turns go optimistic before the other writes.
run_lists = st.lists(
    st.tuples(st.integers(0, 1), st.lists(st.one_of(transfer, transfer, kyc, pause), min_size=1, max_size=8)),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def writers() -> Iterator[tuple[LedgerApplication, LedgerApplication]]:
    """Two processes' applications on one store (a schema of the module's own)."""
    require_postgres()
    with scratch_schema_url() as url:
        first = LedgerApplication(store_env(url))
        second = LedgerApplication(store_env(url))
        yield first, second
        first.close()
        second.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerApplication]:
    path: Path = tmp_path_factory.mktemp("reference") / "ledger.sqlite3"
    application = LedgerApplication(store_env(f"sqlite:///{path}"))
    yield application
    application.close()


def set_up(app: LedgerApplication, n: int) -> tuple[str, dict[str, str]]:
    asset_id = open_asset(app, asset_id=f"TWO-{n:05d}")
    investors = {name: onboard(app, f"{name}-{n}") for name in NAMES}
    for investor_id in investors.values():
        holding(app, asset_id, investor_id, START)
    return asset_id, investors


def send(app: LedgerApplication, asset_id: str, investors: dict[str, str], command: tuple[Any, ...]) -> Any:
    """The command's outcome: its result, or its error's code."""
    kind, *args = command
    try:
        if kind == "transfer":
            sender, receiver, quantity = args
            return app.transfer(asset_id, investors[sender], investors[receiver], quantity).result
        if kind == "kyc":
            name, status = args
            return app.update_kyc(investors[name], status).result
        (paused,) = args
        return (app.pause_asset if paused else app.unpause_asset)(asset_id).result
    except LedgerError as error:
        return error.code


@pytest.mark.parametrize("quiet_turns", [0, commit.QUIET_TURNS], ids=["always-optimistic", "as-deployed"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=run_lists)
# The stale case a unique key cannot see: the rule is on another aggregate than the append.
@example(runs=[(1, [("kyc", "carol", "rejected")]), (0, [("transfer", "alice", "carol", 1)])])
def test_two_writers_decide_every_command_as_one_does(
    writers: tuple[LedgerApplication, LedgerApplication],
    reference: LedgerApplication,
    runs: list[tuple[int, list[tuple[Any, ...]]]],
    quiet_turns: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commit, "QUIET_TURNS", quiet_turns)
    n = next(examples)
    asset_id, investors = set_up(writers[0], n)
    set_up(reference, n)
    for who, commands in runs:
        for command in commands:
            ours = send(writers[who], asset_id, investors, command)
            assert ours == send(reference, asset_id, investors, command), (who, command)
    for app in writers:
        assert app.get_asset(asset_id).balances == reference.get_asset(asset_id).balances
        assert app.get_asset(asset_id).paused == reference.get_asset(asset_id).paused
        for investor_id in investors.values():
            assert app.get_investor(investor_id).kyc_status == reference.get_investor(investor_id).kyc_status
