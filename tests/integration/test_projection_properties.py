"""Property tests of the read side: random command sequences, projected three ways.

Hypothesis draws a sequence of commands (investments, payments, cancellations,
transfers, forced transfers, redemptions, freezes, address freezes, pauses,
offerings, KYC changes, wallets, distributions and payments, proposals, votes and
closes, clock moves); many are rejected, which is fine. Interleaved with them, a
`ProjectionRunner` with a tiny batch size projects a few batches at a time (and is
sometimes replaced by a fresh one, which reloads its memory from the tables).

Then:
(a) the incrementally built tables equal, row by row, the tables of a full
    `replay()`, and both equal a reference folded in this module from the stored
    events (itself checked against the aggregates of the write side): the catalogue
    with its totals, holdings, investors, investments, distributions and entitlements,
    proposals, votes and tallies;
(b) `cap_table_as_of` at every global position equals the cap table folded from
    the stored events up to that position, also with frequent cap-table checkpoints
    (`CHECKPOINT_MIN_CHANGES` monkeypatched small) so that queries start from them.

Upserts, updates and deletes are written by executemany or, with `COPY_MIN_ROWS`
monkeypatched to 1, by COPY and a merge on PostgreSQL.

Each test runs on SQLite and, with fewer examples, on PostgreSQL (a fresh schema
per example; marked `postgres`, skipped unless the server answers or
LEDGER_REQUIRE_SERVICES=1 demands it).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, FromClause, select

import projections.batch
import projections.holdings
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.asset import Asset
from ledger.domain.distribution import Distribution
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor
from ledger.domain.proposal import Proposal
from ledger.errors import LedgerError
from projections.assets import CATALOGUE
from projections.distributions import distribution_record, distributions, entitlements
from projections.holdings import (
    CapTable,
    CapTableRow,
    cap_table_as_of,
    current_cap_table,
    holdings,
)
from projections.investors import investment_record, investments, investor_record, investors, wallets
from projections.migrate import upgrade
from projections.proposals import proposal_record, proposals, votes
from projections.replay import replay
from projections.runner import ProjectionRunner
from projections.schema import engine_for, metadata
from tests.conftest import PG_URL, FakeClock, require_postgres
from tests.support import wallet_for

pytestmark = pytest.mark.integration

# ----- the scenario -----

ALPHA, BETA = "ALPHA-1", "BETA-2"
ASSET_IDS = (ALPHA, BETA)
ASSETS: dict[str, dict[str, Any]] = {
    # whole tokens at 100,000 each; little supply, so `authorized_supply_exceeded` comes up
    ALPHA: {
        "asset_id": ALPHA,
        "name": "Toll road",
        "symbol": "TOL",
        "decimals": 0,
        "currency": "IDR",
        "unit_price": 100_000,
        "authorized_supply": 150,
        "min_investment": 100_000,
        "max_investment": 2_500_000,
    },
    # two decimals, holder and balance limits, a lock-up, two countries only
    BETA: {
        "asset_id": BETA,
        "name": "Rental building",
        "symbol": "RNT",
        "decimals": 2,
        "currency": "IDR",
        "unit_price": 1_000_000,
        "authorized_supply": 2_000,
        "min_investment": 0,
        "max_investment": 4_000_000,
        "max_holders": 3,
        "max_balance": 700,
        "allowed_countries": ["ID", "SG"],
        "lockup_seconds": 100,
    },
}
INVESTORS: dict[str, tuple[str, bool, str]] = {  # id: country, accredited, initial KYC
    "alice": ("ID", False, "approved"),
    "bob": ("SG", False, "approved"),
    "carol": ("ID", True, "approved"),
    "dave": ("US", False, "pending"),
}
INVESTOR_IDS = tuple(INVESTORS)
SEED = (("alice", ALPHA, 2_000_000), ("bob", ALPHA, 1_000_000), ("alice", BETA, 2_000_000))
OPTIONS = ("yes", "no", "abstain")

Op = tuple[Any, ...]

asset_ids = st.sampled_from(ASSET_IDS)
investor_ids = st.sampled_from(INVESTOR_IDS)
picks = st.integers(0, 99)  # picks one of the investments / distributions / proposals made so far
# an investment: mostly one still pending (a negative pick: any, to be rejected when it is not)
investment_picks = st.integers(-30, 99)
# an investor the command takes tokens from: mostly one that holds (or has frozen) some
sources = st.one_of(st.integers(0, 9), investor_ids)
# percent of the balance (or frozen quantity) the command is about; edges and nonsense too
shares = st.one_of(st.sampled_from((50, 100, 25, 10, 101)), st.integers(-5, 120))
# money: mostly whole ALPHA tokens (and plenty of BETA), sometimes anything
amounts = st.one_of(st.integers(1, 25).map(lambda units: units * 100_000), st.integers(0, 3_000_000))

# each kind of operation, with its weight (how often it comes up) and its arguments
OPERATIONS: dict[str, tuple[int, st.SearchStrategy[tuple[Any, ...]]]] = {
    "invest": (4, st.tuples(investor_ids, asset_ids, amounts, st.booleans())),
    "confirm": (3, st.tuples(investment_picks)),
    "cancel": (1, st.tuples(investment_picks)),
    "transfer": (6, st.tuples(asset_ids, sources, investor_ids, shares, st.booleans())),
    "redeem": (1, st.tuples(asset_ids, sources, shares)),
    "freeze": (2, st.tuples(asset_ids, sources, shares)),
    "unfreeze": (1, st.tuples(asset_ids, sources, shares)),
    "freeze_address": (1, st.tuples(asset_ids, investor_ids)),
    "unfreeze_address": (1, st.tuples(asset_ids, investor_ids)),
    "toggle_pause": (1, st.tuples(asset_ids)),
    "toggle_offering": (1, st.tuples(asset_ids)),
    "kyc": (1, st.tuples(investor_ids, st.sampled_from(("approved", "revoked", "pending")))),
    "add_wallet": (1, st.tuples(investor_ids)),
    "recover_wallet": (1, st.tuples(investor_ids)),
    "declare": (2, st.tuples(asset_ids, st.integers(1, 10_000_000), st.none() | st.integers(0, 110))),
    "pay": (1, st.tuples(picks, st.none() | investor_ids)),
    "propose": (1, st.tuples(asset_ids, st.integers(0, 10_000), st.booleans())),
    "vote": (3, st.tuples(picks, investor_ids, st.integers(0, 3))),
    "close": (1, st.tuples(picks)),
    "advance": (1, st.tuples(st.sampled_from((30, 70, 150)))),
    "project": (3, st.tuples(st.integers(1, 3))),
    "restart_runner": (2, st.tuples()),
}
operation: st.SearchStrategy[Op] = st.sampled_from(
    [kind for kind, (weight, _) in OPERATIONS.items() for _ in range(weight)]
).flatmap(lambda kind: OPERATIONS[kind][1].map(lambda args: (kind, *args)))
operations = st.lists(operation, min_size=8, max_size=40)
batch_sizes = st.sampled_from((3, 1, 2, 5))
# None keeps the production CHECKPOINT_MIN_CHANGES (1000: no checkpoint in these short runs)
checkpoint_every = st.sampled_from((None, 3, 1, 2))
# None keeps the production COPY_MIN_ROWS (64: these short runs write upserts, updates and deletes
# by executemany); 1 sends every group of them through COPY and a merge on PostgreSQL
copy_min_rows = st.sampled_from((None, 1))

# An explicit example that took a checkpoint between the two halves of a transfer before
# checkpoints were taken after whole events (with CHECKPOINT_MIN_CHANGES = 3: the two seed
# issuances of ALPHA are changes 1 and 2, the sender's half of the transfer is change 3).
CHECKPOINT_SPLITS_A_TRANSFER: list[Op] = [("transfer", ALPHA, "alice", "carol", 40, False)]


# ----- stores -----


@contextmanager
def sqlite_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ledger-props-") as directory:
        # the default configuration: read models in the event store's database
        yield f"sqlite:///{directory}/ledger.sqlite3"


@contextmanager
def postgres_store() -> Iterator[str]:
    """A fresh schema (as conftest's `pg_schema_url`), dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


STORES: dict[str, Callable[[], AbstractContextManager[str]]] = {
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def prepare_backend(backend: str) -> None:
    if backend == "postgres":
        require_postgres()


def hypothesis_settings(backend: str, sqlite_examples: int, postgres_examples: int) -> settings:
    return settings(
        max_examples=sqlite_examples if backend == "sqlite" else postgres_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


# ----- running a sequence -----


@dataclass
class World:
    """The ledger, the read database, an incremental runner and what the commands created."""

    app: LedgerApplication
    engine: Engine
    clock: FakeClock
    batch_size: int
    runner: ProjectionRunner = field(init=False)
    investments: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    distributions: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    wallets_made: int = 0

    def __post_init__(self) -> None:
        self.runner = ProjectionRunner(self.app, self.engine, batch_size=self.batch_size)

    def setup(self) -> None:
        for terms in ASSETS.values():
            self.app.register_asset(terms)
            self.app.approve_asset(terms["asset_id"])
            self.app.set_offering(terms["asset_id"], True)
        for investor_id, (country, accredited, kyc) in INVESTORS.items():
            self.app.register_investor(investor_id, country, wallet_for(investor_id), accredited)
            if kyc != "pending":
                self.app.update_kyc(investor_id, kyc)
        # a few holders to begin with, so that most sequences move tokens around
        for investor_id, asset_id, amount in SEED:
            self.invest(investor_id, asset_id, amount, confirm=True)

    def invest(self, investor_id: str, asset_id: str, amount: int, *, confirm: bool) -> None:
        outcome = self.app.place_investment(investor_id, asset_id, amount)
        investment_id = str(outcome.result["investment_id"])
        self.investments.append(investment_id)
        self.pending.append(investment_id)
        if confirm:
            self.settle(investment_id, confirm=True)

    def settle(self, investment_id: str, *, confirm: bool) -> None:
        if confirm:
            self.app.confirm_payment(investment_id, f"pay-{investment_id[:8]}")
        else:
            self.app.cancel_investment(investment_id)
        self.pending.remove(investment_id)

    def run(self, ops: list[Op]) -> None:
        for op in ops:
            with contextlib.suppress(LedgerError):  # a rejected command appends nothing
                self.step(op)
        self.runner.catch_up()

    def balance(self, asset_id: str, investor_id: str) -> tuple[int, int]:
        asset = self.app.get_asset(asset_id)
        return asset.balance_of(investor_id), asset.frozen_of(investor_id)

    def source(self, asset_id: str, pick: int | str, *, frozen: bool = False) -> str:
        """An investor named outright, or the `pick`-th of those holding (or with frozen) tokens."""
        if isinstance(pick, str):
            return pick
        asset = self.app.get_asset(asset_id)
        candidates = sorted(asset.frozen if frozen else asset.balances) or list(INVESTOR_IDS)
        return candidates[pick % len(candidates)]

    def new_wallet(self) -> str:
        self.wallets_made += 1
        return "0x" + f"{self.wallets_made:040x}"

    def step(self, op: Op) -> None:
        kind, args = op[0], op[1:]
        app = self.app
        if kind == "invest":
            investor_id, asset_id, amount, confirm = args
            self.invest(investor_id, asset_id, amount, confirm=confirm)
        elif kind in ("confirm", "cancel"):
            (pick,) = args
            among = self.pending if pick >= 0 and self.pending else self.investments
            investment_id = among[pick % len(among)]
            if investment_id in self.pending:
                self.settle(investment_id, confirm=kind == "confirm")
            elif kind == "confirm":
                app.confirm_payment(investment_id, "again")
            else:
                app.cancel_investment(investment_id)
        elif kind == "transfer":
            asset_id, pick, target, share, forced = args
            source = self.source(asset_id, pick)
            quantity = self.balance(asset_id, source)[0] * share // 100
            app.transfer(asset_id, source, target, quantity, forced=forced)
        elif kind in ("redeem", "freeze"):
            asset_id, pick, share = args
            investor_id = self.source(asset_id, pick)
            quantity = self.balance(asset_id, investor_id)[0] * share // 100
            if kind == "redeem":
                app.redeem(asset_id, investor_id, quantity)
            else:
                app.freeze_tokens(asset_id, investor_id, quantity)
        elif kind == "unfreeze":
            asset_id, pick, share = args
            investor_id = self.source(asset_id, pick, frozen=True)
            app.unfreeze_tokens(asset_id, investor_id, self.balance(asset_id, investor_id)[1] * share // 100)
        elif kind == "freeze_address":
            app.freeze_investor(*args)
        elif kind == "unfreeze_address":
            app.unfreeze_investor(*args)
        elif kind == "toggle_pause":
            (asset_id,) = args
            if app.get_asset(asset_id).paused:
                app.unpause_asset(asset_id)
            else:
                app.pause_asset(asset_id)
        elif kind == "toggle_offering":
            (asset_id,) = args
            app.set_offering(asset_id, not app.get_asset(asset_id).offering_open)
        elif kind == "kyc":
            app.update_kyc(*args)
        elif kind == "add_wallet":
            app.add_wallet(args[0], self.new_wallet())
        elif kind == "recover_wallet":
            (investor_id,) = args
            lost = app.get_investor(investor_id).wallets[0]
            app.recover_wallet(investor_id, lost, self.new_wallet())
        elif kind == "declare":
            asset_id, amount, record = args
            head = app.admin.head_position()
            position = None if record is None else head * record // 100
            outcome = app.declare_distribution(asset_id, amount, position)
            self.distributions.append(str(outcome.result["distribution_id"]))
        elif kind == "pay":
            if not self.distributions:
                return
            app.pay_distribution(self.distributions[args[0] % len(self.distributions)], args[1])
        elif kind == "propose":
            asset_id, quorum_bps, deadline = args
            closes_at = self.clock.now + timedelta(seconds=100) if deadline else None
            outcome = app.create_proposal(asset_id, "Renovate?", list(OPTIONS), quorum_bps, closes_at)
            self.proposals.append(str(outcome.result["proposal_id"]))
        elif kind == "vote":
            if not self.proposals:
                return
            option = (*OPTIONS, "maybe")[args[2]]
            app.cast_vote(self.proposals[args[0] % len(self.proposals)], args[1], option)
        elif kind == "close":
            if not self.proposals:
                return
            app.close_proposal(self.proposals[args[0] % len(self.proposals)])
        elif kind == "advance":
            self.clock.advance(args[0])
        elif kind == "project":
            for _ in range(args[0]):
                self.runner.process_batch()
        elif kind == "restart_runner":
            self.runner = ProjectionRunner(self.app, self.engine, batch_size=self.batch_size)
        else:  # pragma: no cover
            raise AssertionError(f"unknown operation {op}")


@contextmanager
def world(
    backend: str,
    batch_size: int,
    checkpoint_every: int | None,
    monkeypatch: pytest.MonkeyPatch,
    merge_from: int | None = None,
) -> Iterator[World]:
    with monkeypatch.context() as patch, STORES[backend]() as url:
        if checkpoint_every is not None:
            patch.setattr(projections.holdings, "CHECKPOINT_MIN_CHANGES", checkpoint_every)
        if merge_from is not None:
            patch.setattr(projections.batch, "COPY_MIN_ROWS", merge_from)
        clock = FakeClock()
        app = LedgerApplication(store_env(url), clock=clock)
        engine = engine_for(url)
        try:
            upgrade(engine)
            w = World(app, engine, clock, batch_size)
            w.setup()
            yield w
        finally:
            app.close()
            engine.dispose()


# ----- the reference: a fold of the stored events -----


@dataclass
class Holding:
    quantity: int = 0
    frozen: int = 0
    address_frozen: bool = False
    invested_amount: int = 0

    def row(self) -> tuple[int, int, bool, int]:
        return (self.quantity, self.frozen, self.address_frozen, self.invested_amount)

    def is_empty(self) -> bool:
        return self.row() == (0, 0, False, 0)


@dataclass
class Reference:
    """Everything the read models should show, folded from the stored events in this module."""

    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    holdings: dict[tuple[str, str], Holding] = field(default_factory=dict)
    investors: dict[str, dict[str, Any]] = field(default_factory=dict)
    wallets: dict[str, tuple[str, bool]] = field(default_factory=dict)
    investments: dict[str, dict[str, Any]] = field(default_factory=dict)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)
    entitlements: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    votes: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    # cap table of every asset right after every position: {position: {asset: {investor: (q, f)}}}
    history: dict[int, dict[str, dict[str, tuple[int, int]]]] = field(default_factory=dict)
    head: int = 0
    names: dict[UUID, str] = field(default_factory=dict)

    def holding(self, asset_id: str, investor_id: str) -> Holding:
        return self.holdings.setdefault((asset_id, investor_id), Holding())

    def cap_table(self, asset_id: str) -> dict[str, tuple[int, int]]:
        return {
            i: (h.quantity, h.frozen)
            for (a, i), h in self.holdings.items()
            if a == asset_id and (h.quantity or h.frozen)
        }

    def rows_at(self, position: int, asset_id: str) -> dict[str, tuple[int, int]]:
        """The cap table right after `position` (positions may have gaps on PostgreSQL)."""
        if position > self.head:
            return self.cap_table(asset_id)
        known = [p for p in self.history if p <= position]
        return self.history[max(known)].get(asset_id, {}) if known else {}

    def balances_at(self, position: int, asset_id: str) -> dict[str, int]:
        return {i: q for i, (q, _) in self.rows_at(position, asset_id).items() if q > 0}

    def apply(self, position: int, event: Any) -> None:
        if isinstance(event, Asset.Registered):
            self.names[event.originator_id] = event.asset_id
            self.assets[event.asset_id] = {
                "status": "draft",
                "offering_open": False,
                "paused": False,
                "total_supply": 0,
                "registered_position": position,
            }
        elif isinstance(event, Asset.Event):
            self.apply_asset(self.names[event.originator_id], event)
        elif isinstance(event, Investor.Registered):
            self.names[event.originator_id] = event.investor_id
            self.investors[event.investor_id] = {
                "country": event.country,
                "accredited": event.accredited,
                "kyc_status": "pending",
                "registered_position": position,
            }
            self.wallets[event.wallet] = (event.investor_id, True)
        elif isinstance(event, Investor.KycUpdated):
            self.investors[self.names[event.originator_id]]["kyc_status"] = event.status
        elif isinstance(event, Investor.WalletAdded):
            self.wallets[event.wallet] = (self.names[event.originator_id], True)
        elif isinstance(event, Investor.WalletRecovered):
            self.wallets[event.lost_wallet] = (self.names[event.originator_id], False)
            self.wallets[event.new_wallet] = (self.names[event.originator_id], True)
        elif isinstance(event, Investment.Placed):
            self.investments[str(event.originator_id)] = {
                "investor_id": event.investor_id,
                "asset_id": event.asset_id,
                "amount": event.amount,
                "quantity": event.quantity,
                "accepted_amount": event.accepted_amount,
                "refund_amount": event.refund_amount,
                "status": "pending_payment",
                "payment_ref": None,
                "placed_position": position,
                "updated_position": position,
            }
        elif isinstance(event, Investment.PaymentConfirmed):
            investment = self.investments[str(event.originator_id)]
            investment.update(status="settled", payment_ref=event.payment_ref, updated_position=position)
            holding = self.holding(investment["asset_id"], investment["investor_id"])
            holding.invested_amount += investment["accepted_amount"]
        elif isinstance(event, Investment.Cancelled):
            self.investments[str(event.originator_id)].update(status="cancelled", updated_position=position)
        elif isinstance(event, Distribution.Declared):
            ident = str(event.originator_id)
            record = position if event.record_position is None else event.record_position
            self.distributions[ident] = {
                "asset_id": event.asset_id,
                "amount": event.amount,
                "record_position": record,
                "declared_position": position,
            }
            # independently of the write side: pro rata of the cap table at the record position
            expected = largest_remainder(event.amount, self.balances_at(record, event.asset_id))
            assert event.entitlements == expected, (ident, record)
            for investor_id, amount in event.entitlements.items():
                self.entitlements[(ident, investor_id)] = (amount, False)
        elif isinstance(event, Distribution.EntitlementsPaid):
            for investor_id in event.investor_ids:
                key = (str(event.originator_id), investor_id)
                self.entitlements[key] = (self.entitlements[key][0], True)
        elif isinstance(event, Proposal.Opened):
            self.proposals[str(event.originator_id)] = {
                "asset_id": event.asset_id,
                "options": list(event.options),
                "quorum_bps": event.quorum_bps,
                "snapshot_position": position,
                "supply_at_snapshot": event.supply_at_snapshot,
                "status": "open",
                "quorum_reached": None,
                "result": None,
            }
            snapshot = self.cap_table(event.asset_id)
            assert event.supply_at_snapshot == sum(q for q, _ in snapshot.values())
        elif isinstance(event, Proposal.VoteCast):
            proposal = self.proposals[str(event.originator_id)]
            held = self.balances_at(proposal["snapshot_position"], proposal["asset_id"])
            assert event.weight == held.get(event.investor_id, 0) > 0
            self.votes[(str(event.originator_id), event.investor_id)] = (event.option, event.weight)
        elif isinstance(event, Proposal.Closed):
            ident = str(event.originator_id)
            proposal = self.proposals[ident]
            tally, reached, result = self.tally(ident)
            assert (dict(event.tally), event.quorum_reached, event.result) == (tally, reached, result)
            proposal.update(status="closed", quorum_reached=reached, result=result)
        self.head = position
        self.history[position] = {a: self.cap_table(a) for a in self.assets}

    def apply_asset(self, asset_id: str, event: Any) -> None:
        asset = self.assets[asset_id]
        if isinstance(event, Asset.Approved):
            asset["status"] = "approved"
        elif isinstance(event, Asset.OfferingOpened | Asset.OfferingClosed):
            asset["offering_open"] = isinstance(event, Asset.OfferingOpened)
        elif isinstance(event, Asset.Paused | Asset.Unpaused):
            asset["paused"] = isinstance(event, Asset.Paused)
        elif isinstance(event, Asset.TokensIssued):
            self.holding(asset_id, event.investor_id).quantity += event.quantity
            asset["total_supply"] += event.quantity
        elif isinstance(event, Asset.TokensTransferred):
            source = self.holding(asset_id, event.from_investor_id)
            source.quantity -= event.quantity
            source.frozen -= event.unfrozen
            self.holding(asset_id, event.to_investor_id).quantity += event.quantity
        elif isinstance(event, Asset.TokensRedeemed):
            holder = self.holding(asset_id, event.investor_id)
            holder.quantity -= event.quantity
            holder.frozen -= event.unfrozen
            asset["total_supply"] -= event.quantity
        elif isinstance(event, Asset.TokensFrozen):
            self.holding(asset_id, event.investor_id).frozen += event.quantity
        elif isinstance(event, Asset.TokensUnfrozen):
            self.holding(asset_id, event.investor_id).frozen -= event.quantity
        elif isinstance(event, Asset.AddressFrozen | Asset.AddressUnfrozen):
            self.holding(asset_id, event.investor_id).address_frozen = isinstance(event, Asset.AddressFrozen)
        for (a, _), holding in self.holdings.items():
            if a == asset_id:
                assert 0 <= holding.frozen <= holding.quantity, (asset_id, holding)

    def tally(self, proposal_id: str) -> tuple[dict[str, int], bool, str]:
        """The tally and result of a proposal as SPEC 4.5 defines them."""
        proposal = self.proposals[proposal_id]
        tally = dict.fromkeys(proposal["options"], 0)
        for (p, _), (option, weight) in self.votes.items():
            if p == proposal_id:
                tally[option] += weight
        cast = sum(tally.values())
        needed = -(-proposal["supply_at_snapshot"] * proposal["quorum_bps"] // 10_000)
        reached = cast >= needed
        ranked = sorted(tally.values(), reverse=True)
        if not reached:
            result = "no_quorum"
        elif ranked[0] == ranked[1]:
            result = "tied"
        else:
            result = max(tally, key=tally.__getitem__)
        return tally, reached, result


def largest_remainder(amount: int, holdings: dict[str, int]) -> dict[str, int]:
    """SPEC 4.4: floor each exact share, leftover units to the largest remainders, ties by id."""
    total = sum(holdings.values())
    exact = {i: divmod(amount * q, total) for i, q in holdings.items()}
    shares = {i: share for i, (share, _) in exact.items()}
    leftover = amount - sum(shares.values())
    for investor_id in sorted(exact, key=lambda i: (-exact[i][1], i))[:leftover]:
        shares[investor_id] += 1
    return shares


def fold(app: LedgerApplication) -> Reference:
    """Folds every stored event, in position order, into a `Reference`."""
    reference = Reference()
    start = 0
    while True:
        notifications = app.recorder.select_notifications(start=start, limit=500, inclusive_of_start=False)
        if not notifications:
            return reference
        for notification in notifications:
            reference.apply(notification.id, app.mapper.to_domain_event(notification))
        start = notifications[-1].id


def expected_cap_table(asset_id: str, position: int, rows: dict[str, tuple[int, int]]) -> CapTable:
    """SPEC order (quantity descending, then investor id), ownership in basis points, floored."""
    live = sorted(((i, q, f) for i, (q, f) in rows.items() if q > 0), key=lambda r: (-r[1], r[0]))
    supply = sum(q for _, q, _ in live)
    holders = [CapTableRow(i, q, f, q * 10_000 // supply) for i, q, f in live]
    return CapTable(asset_id, position, supply, len(holders), holders)


# ----- reading the tables -----


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table, in primary-key order."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, table in sorted(metadata.tables.items()):
            order = list(table.primary_key.columns)
            tables[name] = [tuple(row) for row in conn.execute(select(table).order_by(*order))]
    return tables


def rows(conn: Connection, table: FromClause, key: list[str], values: list[str]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for row in conn.execute(select(table)):
        mapping = row._mapping
        k = tuple(mapping[c] for c in key)
        result[k[0] if len(k) == 1 else k] = {c: mapping[c] for c in values}
    return result


def check_against_aggregates(app: LedgerApplication, world_: World, reference: Reference) -> None:
    """The reference fold agrees with the write side's aggregates (so it is a fair yardstick)."""
    for asset_id in ASSET_IDS:
        asset = app.get_asset(asset_id)
        table = reference.cap_table(asset_id)
        assert asset.balances == {i: q for i, (q, _) in table.items() if q}
        assert asset.frozen == {i: f for i, (_, f) in table.items() if f}
        assert asset.address_frozen == {
            i: True for (a, i), h in reference.holdings.items() if a == asset_id and h.address_frozen
        }
        assert (
            asset.total_supply == reference.assets[asset_id]["total_supply"] == sum(asset.balances.values())
        )
        assert asset.total_supply <= asset.authorized_supply
        assert (asset.paused, asset.offering_open, asset.status) == tuple(
            reference.assets[asset_id][k] for k in ("paused", "offering_open", "status")
        )
    for investor_id in INVESTOR_IDS:
        investor = app.get_investor(investor_id)
        assert investor.kyc_status == reference.investors[investor_id]["kyc_status"]
        active = sorted(w for w, (i, live) in reference.wallets.items() if i == investor_id and live)
        assert sorted(investor.wallets) == active
    for investment_id in world_.investments:
        investment = app.get_investment(investment_id)
        assert investment.status == reference.investments[investment_id]["status"]
    for distribution_id in world_.distributions:
        distribution = app.get_distribution(distribution_id)
        assert {
            (distribution_id, i): (a, i in distribution.paid) for i, a in distribution.entitlements.items()
        } == {k: v for k, v in reference.entitlements.items() if k[0] == distribution_id}
    for proposal_id in world_.proposals:
        proposal = app.get_proposal(proposal_id)
        assert {(proposal_id, i): v for i, v in proposal.votes.items()} == {
            k: v for k, v in reference.votes.items() if k[0] == proposal_id
        }
        assert (proposal.status, proposal.result) == (
            reference.proposals[proposal_id]["status"],
            reference.proposals[proposal_id]["result"],
        )


def check_tables_against_reference(engine: Engine, world_: World, reference: Reference) -> None:
    with engine.connect() as conn:
        catalogue = rows(
            conn,
            CATALOGUE.subquery(),
            ["asset_id"],
            ["status", "offering_open", "paused", "total_supply", "holder_count", "registered_position"],
        )
        assert catalogue == {
            a: {**r, "holder_count": sum(1 for q, _ in reference.cap_table(a).values() if q > 0)}
            for a, r in reference.assets.items()
        }
        held = rows(
            conn,
            holdings,
            ["asset_id", "investor_id"],
            ["quantity", "frozen", "address_frozen", "invested_amount"],
        )
        # rows of holders that hold, held, or were frozen and now show nothing may exist or not
        assert {k: tuple(v.values()) for k, v in held.items() if any(v.values())} == {
            k: h.row() for k, h in reference.holdings.items() if not h.is_empty()
        }
        people = rows(
            conn, investors, ["investor_id"], ["country", "accredited", "kyc_status", "registered_position"]
        )
        assert people == reference.investors
        assert {
            k: (v["investor_id"], v["active"])
            for k, v in rows(conn, wallets, ["wallet"], ["investor_id", "active"]).items()
        } == reference.wallets
        columns = list(next(iter(reference.investments.values()), {}).keys())
        assert rows(conn, investments, ["investment_id"], columns) == reference.investments
        assert (
            rows(
                conn,
                distributions,
                ["distribution_id"],
                ["asset_id", "amount", "record_position", "declared_position"],
            )
            == reference.distributions
        )
        assert {
            k: (v["amount"], v["paid"])
            for k, v in rows(
                conn, entitlements, ["distribution_id", "investor_id"], ["amount", "paid"]
            ).items()
        } == reference.entitlements
        assert {
            k: (v["option"], v["weight"])
            for k, v in rows(conn, votes, ["proposal_id", "investor_id"], ["option", "weight"]).items()
        } == reference.votes
        shown = rows(
            conn,
            proposals,
            ["proposal_id"],
            [
                "asset_id",
                "options",
                "quorum_bps",
                "snapshot_position",
                "supply_at_snapshot",
                "status",
                "quorum_reached",
                "result",
            ],
        )
        assert {
            k: {**v, "options": json.loads(v["options"])} for k, v in shown.items()
        } == reference.proposals

        # the query functions the API serves
        for proposal_id, proposal in reference.proposals.items():
            record = proposal_record(conn, proposal_id)
            assert record is not None
            tally, reached, result = reference.tally(proposal_id)
            assert (record.tally, record.votes_cast_weight) == (tally, sum(tally.values()))
            assert record.status == proposal["status"]
            if proposal["status"] == "closed":
                assert (record.quorum_reached, record.result) == (reached, result)
        for distribution_id, distribution in reference.distributions.items():
            record_ = distribution_record(conn, distribution_id)
            assert record_ is not None
            assert record_.amount == distribution["amount"] == sum(e.amount for e in record_.entitlements)
            assert {(distribution_id, e.investor_id): (e.amount, e.paid) for e in record_.entitlements} == {
                k: v for k, v in reference.entitlements.items() if k[0] == distribution_id
            }
        for investment_id in world_.investments:
            found = investment_record(conn, investment_id)
            assert found is not None
            assert found["status"] == reference.investments[investment_id]["status"]
        for investor_id in INVESTOR_IDS:
            person = investor_record(conn, investor_id)
            assert person is not None
            assert sorted(person.wallets) == sorted(
                w for w, (i, live) in reference.wallets.items() if i == investor_id and live
            )
        for asset_id in ASSET_IDS:
            assert current_cap_table(conn, asset_id, reference.head) == expected_cap_table(
                asset_id, reference.head, reference.cap_table(asset_id)
            )


def check_as_of_every_position(engine: Engine, reference: Reference) -> None:
    with engine.connect() as conn:
        for position in range(1, reference.head + 1):
            for asset_id in ASSET_IDS:
                expected = expected_cap_table(asset_id, position, reference.rows_at(position, asset_id))
                assert cap_table_as_of(conn, asset_id, position) == expected, f"as of position {position}"


# ----- the properties -----


@pytest.mark.parametrize("backend", BACKENDS)
def test_incremental_projection_equals_replay_and_reference(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(a) small incremental batches == a full replay == the reference, table by table, row by row."""
    prepare_backend(backend)

    @hypothesis_settings(backend, sqlite_examples=20, postgres_examples=6)
    @given(ops=operations, batch_size=batch_sizes, every=checkpoint_every, merge_from=copy_min_rows)
    def check(ops: list[Op], batch_size: int, every: int | None, merge_from: int | None) -> None:
        with world(backend, batch_size, every, monkeypatch, merge_from) as w:
            w.run(ops)
            head = w.app.admin.head_position()
            assert w.runner.positions() == dict.fromkeys(w.runner.positions(), head)
            assert set(w.runner.lag().values()) == {0}
            incremental = snapshot(w.engine)

            reference = fold(w.app)
            assert reference.head == head
            check_against_aggregates(w.app, w, reference)
            check_tables_against_reference(w.engine, w, reference)

            assert replay(w.app, w.engine) == head
            assert snapshot(w.engine) == incremental
            check_tables_against_reference(w.engine, w, reference)

    check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cap_table_as_of_every_position_equals_folded_events(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(b) with the production checkpoint interval; also `replay(to=p)` shows the cap table at p."""
    prepare_backend(backend)

    @hypothesis_settings(backend, sqlite_examples=14, postgres_examples=4)
    @given(ops=operations, batch_size=batch_sizes, cut=st.integers(0, 100))
    def check(ops: list[Op], batch_size: int, cut: int) -> None:
        with world(backend, batch_size, None, monkeypatch) as w:
            w.run(ops)
            reference = fold(w.app)
            check_as_of_every_position(w.engine, reference)

            to = max(p for p in reference.history if p <= max(1, reference.head * cut // 100))
            assert replay(w.app, w.engine, to=to) == to
            with w.engine.connect() as conn:
                for asset_id in ASSET_IDS:
                    expected = expected_cap_table(asset_id, to, reference.rows_at(to, asset_id))
                    assert current_cap_table(conn, asset_id, to) == expected
            # a runner carries on from the replayed position to the head
            ProjectionRunner(w.app, w.engine, batch_size=batch_size).catch_up()
            check_tables_against_reference(w.engine, w, reference)

    check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cap_table_as_of_with_frequent_checkpoints(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """(b) with CHECKPOINT_MIN_CHANGES small, so that as-of queries start from checkpoints."""
    prepare_backend(backend)

    @hypothesis_settings(backend, sqlite_examples=10, postgres_examples=3)
    @given(ops=operations, batch_size=batch_sizes, every=st.sampled_from((3, 1, 2)), merge_from=copy_min_rows)
    @example(ops=CHECKPOINT_SPLITS_A_TRANSFER, batch_size=3, every=3, merge_from=None)
    def check(ops: list[Op], batch_size: int, every: int, merge_from: int | None) -> None:
        with world(backend, batch_size, every, monkeypatch, merge_from) as w:
            w.run(ops)
            check_as_of_every_position(w.engine, fold(w.app))

    check()
