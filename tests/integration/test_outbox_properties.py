"""Property tests of the outbound chain adapter: whatever the ledger does to a bound asset,
the outbox worker leaves the token holding exactly what the ledger holds, and carries
every owed operation out exactly once, even when it dies after sending and resumes.

Each example drives a fresh SQLite ledger with one asset bound to a `FakeChain` token
(T-REX semantics) through random settled investments, transfers (plain and forced),
redemptions, partial and address freezes, pauses, added wallets and wallet
recoveries; many commands are refused by the rules of SPEC 4.3, which only means
nothing is owed to the chain for them. The worker runs now and then in between and
until nothing is left at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.chain.outbound import OutboxWorker, TransientChainError
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.chain import ChainOperation
from ledger.errors import LedgerError
from ledger.outbox import DONE
from tests.conftest import FakeClock
from tests.fake_chain import FakeChain, WorkerDiedError
from tests.integration.test_outbound_worker import TOKEN, bind
from tests.support import holding, onboard, open_asset

pytestmark = pytest.mark.integration

INVESTORS = ("alice", "bob", "carol")
investors = st.sampled_from(INVESTORS)
# An investor whose tokens a command acts on: named, or an integer that picks one of the
# holders (negative: one holding frozen tokens), so that few commands are wasted on
# investors who hold nothing.
Pick = int | str
holders = st.one_of(st.integers(0, 99), st.integers(-99, -1), investors)
# Quantities: small integers (0 is refused), or relative to the investor's position so
# that edges such as `free + 1` come up.
QUANTITY_MODES = ("balance", "free", "free+1", "frozen", "frozen+1", "half")
quantities = st.one_of(st.sampled_from(QUANTITY_MODES), st.integers(0, 6))
# Faults of the worker's process or of the node, armed before the next worker run.
FAULTS = ("die_after_broadcast", "lose_next_broadcast", "unreachable")

Command = tuple[Any, ...]
commands = st.one_of(
    st.tuples(st.just("invest"), investors, st.integers(1, 9)),
    st.tuples(st.just("transfer"), holders, investors, quantities, st.booleans()),
    st.tuples(st.just("invest"), investors, st.integers(1, 9)),
    st.tuples(st.sampled_from(("redeem", "freeze", "unfreeze")), holders, quantities),
    st.tuples(st.just("freeze"), holders, quantities),
    # taking more than the free tokens of a holder with frozen ones: T-REX unfreezes the rest
    st.tuples(st.just("transfer"), st.integers(-99, -1), investors, st.just("free+1"), st.just(True)),
    st.tuples(st.just("redeem"), st.integers(-99, -1), st.sampled_from(("free+1", "balance"))),
    st.tuples(st.just("unfreeze"), st.integers(-99, -1), st.sampled_from(("frozen", 1))),
    st.tuples(st.sampled_from(("freeze_address", "unfreeze_address")), holders),
    st.tuples(st.sampled_from(("pause", "unpause"))),
    st.tuples(st.just("add_wallet"), investors),
    st.tuples(st.just("recover"), holders, st.integers(0, 1)),  # which of the investor's wallets
    st.tuples(st.just("work")),
)
faulty_commands = st.one_of(commands, st.tuples(st.just("fault"), st.sampled_from(FAULTS)))
scripts = st.lists(commands, min_size=12, max_size=40)
faulty_scripts = st.lists(faulty_commands, min_size=12, max_size=40)

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class World:
    """One ledger with one bound asset, the fake chain its token lives on, and every
    wallet each investor ever had (lost ones included)."""

    app: LedgerApplication
    asset_id: str
    chain: FakeChain = field(default_factory=FakeChain)
    wallets: dict[str, list[str]] = field(default_factory=dict)
    fresh_wallets: int = 0

    def worker(self) -> OutboxWorker:
        return OutboxWorker(self.app, self.chain, lambda: [self.asset_id], receipt_timeout=1)

    def new_wallet(self) -> str:
        self.fresh_wallets += 1
        return f"0x{self.fresh_wallets:040x}"

    def note_wallets(self, investor_id: str) -> None:
        for wallet in self.app.get_investor(investor_id).wallets:
            if wallet not in self.wallets[investor_id]:
                self.wallets[investor_id].append(wallet)


@contextmanager
def bound_world() -> Iterator[World]:
    """A fresh ledger on its own SQLite file: one asset, bound and mirrored, and the investors."""
    directory = tempfile.mkdtemp(prefix="ledger-outbox-pbt-")
    app = LedgerApplication(store_env(f"sqlite:///{directory}/ledger.sqlite3"), clock=FakeClock())
    try:
        asset_id = open_asset(app)
        bind(app, asset_id)
        world = World(app, asset_id)
        for investor_id in INVESTORS:
            onboard(app, investor_id)
            world.wallets[investor_id] = []
            world.note_wallets(investor_id)
        yield world
    finally:
        app.close()
        shutil.rmtree(directory, ignore_errors=True)


def run_worker(world: World) -> None:
    """One worker run; a death or an unreachable node only ends it (the next run resumes)."""
    with suppress(WorkerDiedError, TransientChainError):
        world.worker().run_once()


def drain(world: World) -> None:
    """Runs workers until one finds nothing left to do; then disarms the faults no run met."""
    chain = world.chain
    for _ in range(100):
        try:
            if world.worker().run_once() == 0:
                chain.die_after_broadcast = chain.lose_next_broadcast = False
                chain.unreachable = 0
                return
        except (WorkerDiedError, TransientChainError):
            pass
    pytest.fail("the outbox never emptied")


def investor(world: World, pick: Pick) -> str:
    if isinstance(pick, str):
        return pick
    asset = world.app.get_asset(world.asset_id)
    frozen = sorted(i for i, q in asset.frozen.items() if q)
    held = (frozen if pick < 0 else []) or sorted(asset.balances) or list(INVESTORS)
    return held[pick % len(held)]


def quantity(world: World, investor_id: str, pick: int | str) -> int:
    if isinstance(pick, int):
        return pick
    asset = world.app.get_asset(world.asset_id)
    balance, frozen = asset.balance_of(investor_id), asset.frozen_of(investor_id)
    relative = {
        "balance": balance,
        "free": balance - frozen,
        "free+1": balance - frozen + 1,
        "frozen": frozen,
        "frozen+1": frozen + 1,
        "half": (balance + 1) // 2,
    }
    return relative[pick]


def invest(world: World, _: str, investor_id: str, tokens: int) -> None:
    holding(world.app, world.asset_id, investor_id, tokens)


def on_holder(world: World, name: str, pick: Pick, quantity_pick: int | str) -> None:
    app, investor_id = world.app, investor(world, pick)
    act = {"redeem": app.redeem, "freeze": app.freeze_tokens, "unfreeze": app.unfreeze_tokens}[name]
    act(world.asset_id, investor_id, quantity(world, investor_id, quantity_pick))


def transfer(
    world: World, _: str, sender_pick: Pick, receiver: str, quantity_pick: int | str, forced: bool
) -> None:
    sender = investor(world, sender_pick)
    q = quantity(world, sender, quantity_pick)
    world.app.transfer(world.asset_id, sender, receiver, q, forced=forced)


def address_freeze(world: World, name: str, pick: Pick) -> None:
    act = world.app.freeze_investor if name == "freeze_address" else world.app.unfreeze_investor
    act(world.asset_id, investor(world, pick))


def pause(world: World, name: str) -> None:
    (world.app.pause_asset if name == "pause" else world.app.unpause_asset)(world.asset_id)


def add_wallet(world: World, _: str, investor_id: str) -> None:
    world.app.add_wallet(investor_id, world.new_wallet())
    world.note_wallets(investor_id)


def recover(world: World, _: str, pick: Pick, which: int) -> None:
    app, investor_id = world.app, investor(world, pick)
    current = app.get_investor(investor_id).wallets
    which = min(which, len(current) - 1)
    app.recover_wallet(investor_id, current[which], world.new_wallet())
    world.note_wallets(investor_id)


def work(world: World, _: str) -> None:
    run_worker(world)


def arm(world: World, _: str, fault: str) -> None:
    if fault == "unreachable":
        world.chain.unreachable = 1
    else:
        setattr(world.chain, fault, True)


HANDLERS: dict[str, Callable[..., None]] = {
    "invest": invest,
    "transfer": transfer,
    "redeem": on_holder,
    "freeze": on_holder,
    "unfreeze": on_holder,
    "freeze_address": address_freeze,
    "unfreeze_address": address_freeze,
    "pause": pause,
    "unpause": pause,
    "add_wallet": add_wallet,
    "recover": recover,
    "work": work,
    "fault": arm,
}


def apply(world: World, command: Command) -> None:
    """Carries one command out on the ledger (or runs the worker, or arms a fault); the
    ledger refusing it is fine."""
    with suppress(LedgerError):
        HANDLERS[command[0]](world, *command)


# --------------------------------------------------------------------------- what must hold


def assert_chain_holds_what_the_ledger_holds(world: World) -> None:
    asset, chain = world.app.get_asset(world.asset_id), world.chain
    for investor_id, ever in world.wallets.items():
        primary = world.app.get_investor(investor_id).wallets[0]
        held = {w: (chain.balances[TOKEN, w], chain.frozen[TOKEN, w]) for w in ever}
        assert held[primary] == (asset.balance_of(investor_id), asset.frozen_of(investor_id)), (
            investor_id,
            held,
        )
        assert all(position == (0, 0) for w, position in held.items() if w != primary), (investor_id, held)
        address_frozen = bool(asset.address_frozen.get(investor_id))
        assert ((TOKEN, primary) in chain.address_frozen) == address_frozen, investor_id
    on_chain = sum(q for (token, _), q in chain.balances.items() if token == TOKEN)
    assert on_chain == asset.total_supply
    assert (TOKEN in chain.paused_tokens) == asset.paused


def assert_each_operation_carried_out_once(world: World) -> None:
    app, chain = world.app, world.chain
    rows = app.outbox.all_rows()
    assert [(r.seq, r.state) for r in rows if r.state != DONE] == []
    recorded = Counter(
        n.originator_id
        for n in app.recorder.select_notifications(start=1, limit=1_000_000)
        if n.topic.endswith("ChainOperation.Recorded")
    )
    expected = {ChainOperation.create_id(row.seq, world.asset_id) for row in rows}
    assert set(recorded) == expected
    assert set(recorded.values()) <= {1}
    for row in rows:
        outcome: Any = app.repository.get(ChainOperation.create_id(row.seq, world.asset_id))
        assert isinstance(outcome, ChainOperation)
        assert outcome.succeeded, (row.kind, row.payload, outcome.reason)
        assert outcome.tx_hash == row.tx_hash
        assert outcome.tx_hash is None or chain.mined[outcome.tx_hash].ok
    assert chain.executed == dict.fromkeys(range(chain.nonce), 1)
    assert len(chain.calls) == chain.nonce == sum(row.tx_hash is not None for row in rows)


# --------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(scripts)
def test_the_worker_leaves_the_token_holding_what_the_ledger_holds(script: list[Command]) -> None:
    with bound_world() as world:
        for command in script:
            apply(world, command)
        drain(world)
        assert_chain_holds_what_the_ledger_holds(world)
        assert_each_operation_carried_out_once(world)


@PROPERTY_SETTINGS
@given(faulty_scripts, st.lists(st.sampled_from(FAULTS), max_size=4))
def test_workers_dying_after_sending_and_resuming_never_execute_anything_twice(
    script: list[Command], final_faults: list[str]
) -> None:
    with bound_world() as world:
        for command in script:
            apply(world, command)
        for fault in final_faults:
            apply(world, ("fault", fault))
            run_worker(world)
        drain(world)
        executed = dict(world.chain.executed)
        assert world.worker().run_once() == 0  # a second run has nothing left to do
        assert world.chain.executed == executed
        assert_each_operation_carried_out_once(world)
        assert_chain_holds_what_the_ledger_holds(world)
