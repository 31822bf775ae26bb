"""Projection benchmark (SPEC section 8, "project" and "as-of cap table"): catch-up rate,
full replay time and memory, and as-of cap table latency, on PostgreSQL.

Run from the repository root: `.venv/bin/python bench/project.py [--explain]`.

One fresh PostgreSQL schema (dropped at the end; kept with `BENCH_KEEP_SCHEMA=1`) gets a
history of `BENCH_EVENTS` events (default 1,000,000) of a realistic mix, made by driving the
aggregates' command methods in memory (`common.EventBatches`, appended on a thread of its own):
four assets, the largest with `BENCH_HOLDERS` holders (default 10,000; fewer for small
`BENCH_EVENTS`); registrations, investments (a few cancelled), transfers (most of the history),
freezes, forced transfers, redemptions, a pause, distributions, proposals with votes. The raw
read, the catch-up, the replay and the as-of queries each run in a process of their own, so
that their memory and garbage collections are theirs alone. Measures and targets:

- `project_catch_up`: events/s of `ProjectionRunner.catch_up()` from freshly migrated, empty
  read models over the whole history, against reading the same events raw
  (`recorder.select_notifications` pages of `BENCH_READ_BATCH`). Target >= 0.25 x.
- `project_replay`: seconds of `replay(app, engine)` (fresh tables, catch-up, swap), against
  the raw read (no target).
- `project_peak_rss`: the replay process's peak RSS (VmHWM, and sampled from outside), against
  the raw-read process's. Target < 500 MB.
- `captable_as_of_p95`: `cap_table_as_of` of the largest asset at `BENCH_AS_OF` (200) random
  positions after its holders were onboarded, each on its own pooled connection, against the
  current cap table of the same asset. Target <= 50 ms, and every measured cap table equal to
  one folded independently from the stored events (`differing_from_fold` == 0).

The holdings after catch-up and after replay must equal the generator's aggregates.
`--explain` adds CPU seconds, p50s, row counts and the table sizes, and the commit measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from eventsourcing.domain import Aggregate
from psycopg import sql

from common import (
    PG_URL,
    ROOT,
    EventBatches,
    arguments,
    logger,
    measure,
    offered_amount,
    peak_rss_mb,
    percentile,
    place_investment,
    random_investor,
    scratch_schema,
    source_state,
    with_schema,
)
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain import values as v
from ledger.domain.asset import Asset
from ledger.domain.distribution import Distribution
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor
from ledger.domain.proposal import Proposal
from ledger.domain.terms import AssetTerms

EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
HOLDERS = min(int(os.environ.get("BENCH_HOLDERS", "10000")), max(200, EVENTS // 25))
READ_BATCH = int(os.environ.get("BENCH_READ_BATCH", "5000"))  # the runner's default batch
AS_OF_QUERIES = int(os.environ.get("BENCH_AS_OF", "200"))
CURRENT_QUERIES = 50
SEED = int(os.environ.get("BENCH_SEED", "20261121"))
RSS_SAMPLE_SECONDS = 0.05

TARGET_CATCH_UP = 0.25  # catch-up events/s >= 0.25 x raw read events/s
TARGET_RSS_MB = 500.0  # full replay peak RSS < 500 MB
TARGET_AS_OF_P95_MS = 50.0  # as-of cap table of the 10,000-holder asset, p95 <= 50 ms

BIG = "TOLL-JKT-01"
HOLDING_EVENTS = {"TokensIssued", "TokensTransferred", "TokensRedeemed", "TokensFrozen", "TokensUnfrozen"}


log = logger("project")


def admin_sql(statement: str) -> None:
    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(statement.encode())
    except psycopg.Error as error:  # not allowed for this role: measure anyway
        log(f"{statement} skipped: {error}")


def checkpoint() -> None:
    """Starts each measured phase from a clean WAL state, so a checkpoint does not land mid-run."""
    admin_sql("CHECKPOINT")


# ----- the history: aggregates driven in memory, events appended in big batches -----


@dataclass
class AssetPlan:
    terms: dict[str, Any]
    holders: int  # onboarded through investments
    transfer_weight: float  # share of the transfers
    quantity: tuple[int, int]  # base units bought per investment
    closed_register: bool = False  # transfers only between its first holders (a fixed holder count)
    pool: list[str] = field(default_factory=list)  # investors who may hold it (eligible)
    holding: list[str] = field(default_factory=list)  # who was onboarded into it


def asset_plans(holders: int) -> list[AssetPlan]:
    return [
        AssetPlan(
            {
                "asset_id": BIG,
                "name": "Jakarta outer ring toll road",
                "symbol": "TJK",
                "decimals": 0,
                "currency": "IDR",
                "unit_price": 100_000,
                "authorized_supply": 10**12,
                "min_investment": 100_000,
                "max_investment": 10**13,
            },
            holders,
            0.76,
            (200, 5_000),
            closed_register=True,
        ),
        AssetPlan(
            {
                "asset_id": "WATER-SBY-02",
                "name": "Surabaya water treatment plant",
                "symbol": "WSB",
                "decimals": 2,
                "currency": "IDR",
                "unit_price": 2_500_000,
                "authorized_supply": 10**14,
                "min_investment": 1_000_000,
                "max_investment": 10**13,
            },
            max(20, holders // 5),
            0.17,
            (10_000, 500_000),
        ),
        AssetPlan(
            {
                "asset_id": "RENT-BDG-03",
                "name": "Bandung rental apartments",
                "symbol": "RBD",
                "decimals": 0,
                "currency": "USD",
                "unit_price": 10_000,
                "authorized_supply": 10**9,
                "min_investment": 10_000,
                "max_investment": 10**10,
                "allowed_countries": ["ID", "SG", "MY"],
                "accredited_only": True,
            },
            max(10, holders // 20),
            0.05,
            (50, 2_000),
        ),
        AssetPlan(
            {
                "asset_id": "SOLAR-BALI-04",
                "name": "Bali solar farm",
                "symbol": "SBL",
                "decimals": 0,
                "currency": "IDR",
                "unit_price": 1_000_000,
                "authorized_supply": 10**9,
                "min_investment": 1_000_000,
                "max_investment": 10**12,
                "max_holders": max(10, holders // 100) + 20,
            },
            max(5, holders // 100),
            0.02,
            (100, 3_000),
        ),
    ]


@dataclass
class Voting:
    proposal: Proposal
    snapshot: dict[str, int]
    voters: deque[str]


class Appender:
    """Appends batches of events with `app.events.put`, in order, on a thread of its own, so
    that the database's work overlaps with the generation of the next batch."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.queue: queue.Queue[list[Any] | None] = queue.Queue(maxsize=3)
        self.error: BaseException | None = None
        self.head = 0
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, name="appender", daemon=True)
        self.thread.start()

    def put(self, events: list[Any]) -> None:
        self._check()
        self.queue.put(events)

    def drain(self) -> int:
        """Waits until every batch handed over is appended; returns the head position."""
        self.queue.join()
        self._check()
        return self.head

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _check(self) -> None:
        if self.error is not None:
            msg = "appending the generated events failed"
            raise RuntimeError(msg) from self.error

    def _run(self) -> None:
        while True:
            events = self.queue.get()
            try:
                if events is None:
                    return
                if self.error is None:
                    started = time.perf_counter()
                    recordings = self.app.events.put(events)
                    self.seconds += time.perf_counter() - started
                    self.head = recordings[-1].notification.id
            except BaseException as error:  # handed to the generating thread
                self.error = error
            finally:
                self.queue.task_done()


class History(EventBatches):
    """Drives the aggregates' command methods like the application does, one command at a time;
    the batches are appended on the appender's thread."""

    def __init__(self, app: LedgerApplication, target: int, holders: int) -> None:
        super().__init__(app)
        self.target = target
        self.rng = random.Random(SEED)
        self.plans = asset_plans(holders)
        self.assets: dict[str, Asset] = {}
        self.weights = [p.transfer_weight for p in self.plans]
        self.investors: dict[str, Investor] = {}
        self.eligible: list[str] = []
        self.pending_investments: deque[Investment] = deque()
        self.frozen_tokens: list[tuple[str, str]] = []  # (asset, investor) with frozen tokens
        self.frozen_addresses: list[tuple[str, str]] = []
        self.votings: list[Voting] = []
        self.distributions: list[Distribution] = []
        self.paying: deque[tuple[Distribution, deque[str]]] = deque()
        self.appender = Appender(app)
        self.onboarded_at = 0  # position after which every asset holds all its first holders
        self.now = datetime.now(tz=UTC)

    # ----- plumbing -----

    def append(self, events: list[Any]) -> None:
        self.appender.put(events)

    def flush(self, wait: bool = False) -> None:
        """Hands the waiting events to the appender; with `wait`, until they are all appended."""
        super().flush()
        if wait:
            self.head = self.appender.drain()

    def pick_holder(self, asset: Asset) -> str | None:
        plan = self.plan_of(asset.asset_id)
        for _ in range(8):
            investor_id = self.rng.choice(plan.pool)
            if asset.balances.get(investor_id, 0) > 0:
                return investor_id
        return None

    def receiver(self, asset: Asset) -> str:
        plan = self.plan_of(asset.asset_id)
        return self.rng.choice(plan.holding if plan.closed_register else plan.pool)

    def plan_of(self, asset_id: str) -> AssetPlan:
        return next(p for p in self.plans if p.terms["asset_id"] == asset_id)

    def random_asset(self) -> Asset:
        plan = self.rng.choices(self.plans, self.weights)[0]
        return self.assets[plan.terms["asset_id"]]

    # ----- the commands, as the application runs them -----

    def register_asset(self, plan: AssetPlan) -> None:
        asset = Asset.register(AssetTerms.parse(plan.terms))
        self.assets[asset.asset_id] = asset
        self.commit("register_asset", asset)
        asset.approve()
        self.commit("approve_asset", asset)
        if asset.asset_id == BIG:
            asset.bind_token(31337, v.wallet("0x" + "11" * 20), v.wallet("0x" + "22" * 20))
            self.commit("bind_token", asset)
        asset.set_offering(True)
        self.commit("set_offering", asset)

    def register_investor(self, number: int) -> Investor:
        claim, investor = random_investor(self.rng, number, accredited_share=0.25)
        self.investors[investor.investor_id] = investor
        self.commit("register_investor", claim, investor)
        return investor

    def approve_kyc(self, investor: Investor) -> None:
        expires = datetime(2031, 1, 1, tzinfo=UTC) if self.rng.random() < 0.3 else None
        investor.update_kyc("approved", expires)
        self.commit("update_kyc", investor)
        self.eligible.append(investor.investor_id)

    def place_investment(self, asset: Asset, investor_id: str, quantity: int) -> bool:
        investor = self.investors[investor_id]
        amount = offered_amount(asset, quantity, self.rng)

        def command() -> tuple[Aggregate, ...]:
            eligible = investor.eligible_for(asset, self.now)
            investment, _ = place_investment(asset, investor_id, eligible, amount)
            self.pending_investments.append(investment)
            return asset, investment

        return self.attempt("place_investment", command)

    def settle_oldest(self, cancel: bool = False) -> None:
        investment = self.pending_investments.popleft()
        asset = self.assets[investment.asset_id]
        investment.check_pending()
        asset.check_reservation(investment.investor_id, investment.quantity)
        if cancel:
            investment.cancel()
            asset.release(investment.id, investment.investor_id, investment.quantity)
            self.commit("cancel_investment", investment, asset)
            return
        investment.confirm_payment(f"PAY-{investment.id.hex[:12].upper()}")
        asset.issue(investment.id, investment.investor_id, investment.quantity, self.now)
        self.commit("confirm_payment", investment, asset)

    def transfer(self, asset: Asset) -> None:
        sender = self.pick_holder(asset)
        if sender is None:
            self.rejected += 1
            return
        receiver = self.receiver(asset)
        quantity = self.rng.randint(1, max(1, asset.balances[sender] // 20))
        eligible = self.investors[receiver].eligible_for(asset, self.now)

        def command() -> tuple[Aggregate, ...]:
            asset.transfer(sender, receiver, quantity, eligible, self.now)
            return (asset,)

        self.attempt("transfer", command)

    def forced_transfer(self, asset: Asset) -> None:
        frozen = [i for a, i in self.frozen_tokens if a == asset.asset_id]
        sender = self.rng.choice(frozen) if frozen else self.pick_holder(asset)
        if sender is None:
            return
        receiver = self.receiver(asset)
        quantity = max(1, asset.balances.get(sender, 0) * 3 // 4)

        def command() -> tuple[Aggregate, ...]:
            asset.force_transfer(sender, receiver, quantity)
            return (asset,)

        self.attempt("forced_transfer", command)

    def redeem(self, asset: Asset) -> None:
        holder = self.pick_holder(asset)
        if holder is None:
            return
        quantity = self.rng.randint(1, asset.balances[holder])

        def command() -> tuple[Aggregate, ...]:
            asset.redeem(holder, quantity)
            return (asset,)

        self.attempt("redeem", command)

    def freeze_tokens(self, asset: Asset) -> None:
        holder = self.pick_holder(asset)
        if holder is None:
            return
        free = asset.balances.get(holder, 0) - asset.frozen.get(holder, 0)
        quantity = self.rng.randint(1, max(1, free // 4))

        def command() -> tuple[Aggregate, ...]:
            asset.freeze_tokens(holder, quantity)
            return (asset,)

        if self.attempt("freeze_tokens", command):
            self.frozen_tokens.append((asset.asset_id, holder))

    def unfreeze_tokens(self) -> None:
        asset_id, holder = self.frozen_tokens.pop(self.rng.randrange(len(self.frozen_tokens)))
        asset = self.assets[asset_id]
        frozen = asset.frozen.get(holder, 0)
        if frozen == 0:
            return  # a forced transfer took them
        quantity = frozen if self.rng.random() < 0.7 else self.rng.randint(1, frozen)

        def command() -> tuple[Aggregate, ...]:
            asset.unfreeze_tokens(holder, quantity)
            return (asset,)

        self.attempt("unfreeze_tokens", command)

    def freeze_address(self, asset: Asset) -> None:
        holder = self.pick_holder(asset)
        if holder is None:
            return

        def command() -> tuple[Aggregate, ...]:
            asset.freeze_address(holder)
            return (asset,)

        if self.attempt("freeze_investor", command):
            self.frozen_addresses.append((asset.asset_id, holder))

    def unfreeze_address(self) -> None:
        asset_id, holder = self.frozen_addresses.pop(0)
        asset = self.assets[asset_id]

        def command() -> tuple[Aggregate, ...]:
            asset.unfreeze_address(holder)
            return (asset,)

        self.attempt("unfreeze_investor", command)

    def declare_distribution(self, asset_id: str, amount: int, pay_one_by_one: int) -> None:
        asset = self.assets[asset_id]
        distribution = Distribution.declare(asset_id, amount, None, asset.version, asset.balances)
        self.commit("declare_distribution", distribution)
        self.distributions.append(distribution)
        holders = sorted(distribution.entitlements)
        self.rng.shuffle(holders)
        self.paying.append((distribution, deque(holders[: min(pay_one_by_one, len(holders) - 1)])))

    def pay_next(self) -> None:
        distribution, one_by_one = self.paying[0]
        investor_id = one_by_one.popleft() if one_by_one else None
        distribution.pay(investor_id)
        self.commit("pay_distribution", distribution)
        if investor_id is None:
            self.paying.popleft()  # the rest, all at once: done

    def open_proposal(self, asset_id: str, voters: int) -> None:
        asset = self.assets[asset_id]
        proposal = Proposal.open(
            asset_id,
            f"Proposal {len(self.votings) + 1} on {asset_id}",
            ["approve", "reject", "abstain"],
            2_000,
            None,
            asset.version,
            asset.total_supply,
        )
        self.commit("create_proposal", proposal)
        snapshot = dict(asset.balances)
        chosen = self.rng.sample(sorted(snapshot), min(voters, len(snapshot)))
        self.votings.append(Voting(proposal, snapshot, deque(chosen)))

    def vote(self) -> None:
        voting = self.votings[0]
        voter = voting.voters.popleft()
        option = self.rng.choices(["approve", "reject", "abstain"], [5, 3, 1])[0]
        weight = voting.snapshot.get(voter, 0)

        def command() -> tuple[Aggregate, ...]:
            voting.proposal.cast_vote(voter, option, weight, self.now)
            return (voting.proposal,)

        self.attempt("cast_vote", command)
        if not voting.voters:
            voting.proposal.close()
            self.commit("close_proposal", voting.proposal)
            self.votings.pop(0)

    def pause(self, asset_id: str, paused: bool) -> None:
        asset = self.assets[asset_id]
        if paused:
            asset.pause()
        else:
            asset.unpause()
        self.commit("pause_asset" if paused else "unpause_asset", asset)

    # ----- the story -----

    def generate(self, progress: Callable[[str], None]) -> None:
        started = time.perf_counter()
        self.onboard()
        progress(
            f"onboarding: {self.events} events, {len(self.investors)} investors, holders "
            + ", ".join(f"{a}={len(x.balances)}" for a, x in self.assets.items())
        )
        schedule = self.schedule()
        next_report = self.events + max(1, self.target // 10)
        while self.events < self.target:
            while schedule and self.events >= schedule[0][0]:
                schedule.pop(0)[1]()
            self.step()
            if self.events >= next_report:
                elapsed = time.perf_counter() - started
                progress(
                    f"{self.events} events in {elapsed:.1f}s = {self.events / elapsed:.0f}/s"
                    f" (appender busy {self.appender.seconds:.1f}s)"
                )
                next_report += max(1, self.target // 10)
        while self.pending_investments:
            self.settle_oldest()
        self.flush(wait=True)
        self.appender.close()

    def onboard(self) -> None:
        for plan in self.plans:
            self.register_asset(plan)
        investors = int(self.plans[0].holders * 1.1) + 10
        kyc_queue: deque[Investor] = deque()
        for number in range(1, investors + 1):
            kyc_queue.append(self.register_investor(number))
            if len(kyc_queue) > 50:
                investor = kyc_queue.popleft()
                if self.rng.random() < 0.99:  # the rest stay pending
                    self.approve_kyc(investor)
        while kyc_queue:
            self.approve_kyc(kyc_queue.popleft())
        for plan in self.plans:
            probe = self.assets[plan.terms["asset_id"]]
            plan.pool = [i for i in self.eligible if self.investors[i].eligible_for(probe, self.now)]
            plan.holding = self.rng.sample(plan.pool, min(plan.holders, len(plan.pool)))
        orders = [(plan, i) for plan in self.plans for i in plan.holding]
        self.rng.shuffle(orders)
        for plan, investor_id in orders:
            asset = self.assets[plan.terms["asset_id"]]
            for _ in range(5):  # an amount the rules reject is placed again
                if self.place_investment(asset, investor_id, self.rng.randint(*plan.quantity)):
                    break
            if len(self.pending_investments) > 200:
                self.settle_oldest(cancel=self.rng.random() < 0.01)
        while self.pending_investments:
            self.settle_oldest()
        # Cancelled ones invest again, so that every planned holder holds.
        for plan in self.plans:
            asset = self.assets[plan.terms["asset_id"]]
            for investor_id in plan.holding:
                if investor_id not in asset.balances:
                    self.place_investment(asset, investor_id, plan.quantity[0])
                    self.settle_oldest()
        self.flush(wait=True)
        self.onboarded_at = self.head

    def schedule(self) -> list[tuple[int, Callable[[], None]]]:
        at = self.target
        water, rent = self.plans[1].terms["asset_id"], self.plans[2].terms["asset_id"]
        big_holders = self.plans[0].holders
        events: list[tuple[float, Callable[[], None]]] = [
            (0.10, lambda: self.declare_distribution(BIG, 7_500_000_000_000, 0)),
            (0.11, lambda: self.open_proposal(BIG, big_holders // 5)),
            (0.30, lambda: self.declare_distribution(water, 1_234_567_890_123, 300)),
            (0.45, lambda: self.declare_distribution(BIG, 8_100_000_000_000, 50)),
            (0.55, lambda: self.open_proposal(water, big_holders // 20)),
            (0.60, lambda: self.pause(BIG, True)),
            (0.601, lambda: self.pause(BIG, False)),
            (0.70, lambda: self.declare_distribution(rent, 98_765_432, 0)),
            (0.75, lambda: self.declare_distribution(BIG, 9_000_000_000_000, 0)),
            (0.85, lambda: self.open_proposal(BIG, big_holders // 10)),
        ]
        return [(max(self.events, int(at * share)), action) for share, action in events]

    def step(self) -> None:
        """One command of the everyday activity (shares in percent of the commands); one that
        has nothing to act on (no open vote, nothing frozen...) is a transfer instead."""
        roll = self.rng.random() * 100
        if roll < 4.0:
            if self.votings:
                self.vote()
                return
        elif roll < 4.6:
            if self.paying:
                self.pay_next()
                return
        elif roll < 5.2:
            self.freeze_tokens(self.random_asset())
            return
        elif roll < 5.7:
            if self.frozen_tokens:
                self.unfreeze_tokens()
                return
        elif roll < 5.8:
            self.freeze_address(self.random_asset())
            return
        elif roll < 5.9:
            if self.frozen_addresses:
                self.unfreeze_address()
                return
        elif roll < 5.95:
            self.forced_transfer(self.random_asset())
            return
        elif roll < 6.0:
            self.redeem(self.random_asset())
            return
        elif roll < 6.3:
            plan = self.plans[1]
            asset = self.assets[plan.terms["asset_id"]]
            self.place_investment(asset, self.rng.choice(plan.pool), self.rng.randint(*plan.quantity))
            return
        elif roll < 6.6 and self.pending_investments:
            self.settle_oldest(cancel=self.rng.random() < 0.05)
            return
        self.transfer(self.random_asset())


# ----- workers (subprocesses): raw read, catch-up, replay, profile -----


def worker_app(schema: str) -> LedgerApplication:
    return LedgerApplication(store_env(with_schema(PG_URL, schema)))


def reporter(label: str, total: int) -> Callable[[int], None]:
    started = time.perf_counter()
    done = [0, max(1, total // 5)]

    def progress(count: int) -> None:
        done[0] += count
        if done[0] >= done[1]:
            elapsed = time.perf_counter() - started
            log(f"{label}: {done[0]}/{total} events in {elapsed:.1f}s = {done[0] / elapsed:.0f}/s")
            done[1] += max(1, total // 5)

    return progress


def read_all(app: LedgerApplication) -> tuple[int, float, float]:
    """Pages over the whole history like the runner does: (events, seconds, cpu seconds)."""
    count, position = 0, 0
    cpu = time.process_time()
    started = time.perf_counter()
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=READ_BATCH, inclusive_of_start=False
        )
        if not notifications:
            break
        count += len(notifications)
        position = notifications[-1].id
    return count, time.perf_counter() - started, time.process_time() - cpu


def work_raw(schema: str, _: dict[str, Any]) -> dict[str, Any]:
    app = worker_app(schema)
    try:
        warm = read_all(app)
        log(f"raw read warm-up: {warm[0]} events in {warm[1]:.2f}s = {warm[0] / warm[1]:.0f}/s")
        raw = read_all(app)
        log(f"raw read: {raw[0]} events in {raw[1]:.2f}s = {raw[0] / raw[1]:.0f}/s")
    finally:
        app.close()
    return {
        "events": raw[0],
        "warmup_seconds": warm[1],
        "seconds": raw[1],
        "cpu_seconds": raw[2],
    }


def work_catch_up(schema: str, args: dict[str, Any]) -> dict[str, Any]:
    from projections.runner import ProjectionRunner
    from projections.schema import engine_for

    app = worker_app(schema)
    engine = engine_for(with_schema(PG_URL, schema))
    try:
        runner = ProjectionRunner(app, engine, batch_size=READ_BATCH)
        cpu = time.process_time()
        started = time.perf_counter()
        events = runner.catch_up(progress=reporter("catch-up", args["head"]))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        positions = runner.positions()
    finally:
        app.close()
        engine.dispose()
    return {"events": events, "seconds": seconds, "cpu_seconds": cpu, "positions": positions}


def work_replay(schema: str, args: dict[str, Any]) -> dict[str, Any]:
    from projections.replay import replay
    from projections.schema import engine_for

    app = worker_app(schema)
    engine = engine_for(with_schema(PG_URL, schema))
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        reached = replay(app, engine, progress=reporter("replay", args["head"]))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        app.close()
        engine.dispose()
    return {"reached": reached, "seconds": seconds, "cpu_seconds": cpu}


def worker_main(kind: str, schema: str, args_path: str, result_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    result = WORKERS[kind](schema, args)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(result_path).write_text(json.dumps(result))


def run_worker(kind: str, schema: str, args: dict[str, Any]) -> dict[str, Any]:
    """Runs one worker in a fresh interpreter; its RSS is also sampled from here."""
    with tempfile.TemporaryDirectory(prefix="bench_project_") as tmp:
        args_path, result_path = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args_path.write_text(json.dumps(args))
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            schema,
            str(args_path),
            str(result_path),
        ]
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=sys.stderr, cwd=ROOT)
        sampled = 0
        try:
            process = psutil.Process(child.pid)
            while child.poll() is None:
                try:
                    sampled = max(sampled, process.memory_info().rss)
                except psutil.Error:
                    break
                time.sleep(RSS_SAMPLE_SECONDS)
        finally:
            returncode = child.wait()
        if returncode != 0:
            msg = f"worker {kind} failed with exit code {returncode}"
            raise RuntimeError(msg)
        result: dict[str, Any] = json.loads(result_path.read_text())
    result["sampled_peak_rss_mb"] = sampled / 2**20
    result["process_seconds"] = time.perf_counter() - started
    return result


# ----- checks against the generator's aggregates and an independent fold -----


def check_holdings(schema: str, history: History, label: str) -> None:
    """The read models' current holdings and supplies equal the aggregates' final state."""
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT asset_id, investor_id, quantity, frozen FROM {}.rm_holdings "
                "WHERE quantity > 0 OR frozen > 0"
            ).format(sql.Identifier(schema))
        ).fetchall()
        supplies: dict[str, Any] = dict(
            conn.execute(
                sql.SQL("SELECT asset_id, total_supply FROM {}.rm_asset_totals").format(
                    sql.Identifier(schema)
                )
            ).fetchall()
        )
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for asset_id, investor_id, quantity, frozen in rows:
        found.setdefault(asset_id, {})[investor_id] = (int(quantity), int(frozen))
    for asset_id, asset in history.assets.items():
        expected = {i: (q, asset.frozen.get(i, 0)) for i, q in asset.balances.items()}
        assert found.get(asset_id, {}) == expected, f"{label}: holdings of {asset_id} differ"
        assert int(supplies[asset_id]) == asset.total_supply, f"{label}: supply of {asset_id} differs"
    log(f"{label}: holdings and supplies of {len(history.assets)} assets match the aggregates")


Holdings = dict[str, tuple[int, int]]  # investor -> (quantity, frozen), holders only


def fold_cap_tables(schema: str, asset_id: str, positions: list[int]) -> Iterator[tuple[int, Holdings]]:
    """Cap tables right after the events at `positions`, in position order, folded from the
    stored events: independent of the projections (own query, own JSON decoding, own rules)."""
    wanted = sorted(set(positions))
    balances: dict[str, int] = {}
    frozen: dict[str, int] = {}

    def snapshot() -> dict[str, tuple[int, int]]:
        return {i: (q, frozen.get(i, 0)) for i, q in balances.items() if q > 0}

    def add(mapping: dict[str, int], investor_id: str, delta: int) -> None:
        mapping[investor_id] = mapping.get(investor_id, 0) + delta

    stream = Asset.create_id(asset_id)
    with psycopg.connect(PG_URL) as conn, conn.cursor(name="fold") as cursor:
        cursor.itersize = 20_000
        cursor.execute(
            sql.SQL(
                "SELECT notification_id, topic, state FROM {}.ledger_events "
                "WHERE originator_id = %s ORDER BY originator_version"
            ).format(sql.Identifier(schema)),
            (stream,),
        )
        for position, topic, state in cursor:
            while wanted and position > wanted[0]:
                yield wanted.pop(0), snapshot()
            if not wanted:
                break
            kind = topic.rsplit(".", 1)[-1]
            if kind not in HOLDING_EVENTS:
                continue
            data = json.loads(bytes(state))
            if kind == "TokensIssued":
                add(balances, data["investor_id"], data["quantity"])
            elif kind == "TokensTransferred":
                add(balances, data["from_investor_id"], -data["quantity"])
                add(frozen, data["from_investor_id"], -data["unfrozen"])
                add(balances, data["to_investor_id"], data["quantity"])
            elif kind == "TokensRedeemed":
                add(balances, data["investor_id"], -data["quantity"])
                add(frozen, data["investor_id"], -data["unfrozen"])
            elif kind == "TokensFrozen":
                add(frozen, data["investor_id"], data["quantity"])
            else:
                add(frozen, data["investor_id"], -data["quantity"])
    for position in wanted:
        yield position, snapshot()


def digest(holdings: Holdings) -> str:
    return hashlib.sha256(repr(sorted(holdings.items())).encode()).hexdigest()


def holdings_of(table: Any) -> Holdings:
    """A `CapTable`'s holders as a mapping, after checking its order and its total."""
    order = [(-row.quantity, row.investor_id) for row in table.holders]
    assert order == sorted(order), f"cap table at {table.as_of_position} is not in cap-table order"
    got: Holdings = {row.investor_id: (row.quantity, row.frozen) for row in table.holders}
    assert table.total_supply == sum(q for q, _ in got.values()), "total supply is not the sum"
    return got


# ----- as-of cap table latency -----


@dataclass
class AsOfResult:
    as_of_ms: list[float]
    current_ms: list[float]
    holders: list[int]
    verified: int
    positions: list[int]
    mismatched: list[int]


def work_as_of(schema: str, args: dict[str, Any]) -> dict[str, Any]:
    """As-of and current cap table latencies, in a process of their own (no generator state for
    the garbage collector to walk); each cap table's digest goes back for the verification."""
    from projections.holdings import cap_table_as_of, current_cap_table
    from projections.schema import engine_for

    engine = engine_for(with_schema(PG_URL, schema))
    rng = random.Random(SEED + 1)
    low, high = args["low"], args["head"]
    positions = [rng.randint(low, high) for _ in range(AS_OF_QUERIES)]
    as_of_ms: list[float] = []
    current_ms: list[float] = []
    holders: list[int] = []
    digests: dict[int, str] = {}
    try:
        for position in positions[:10]:  # warm-up: pool, statement cache, buffers
            with engine.connect() as conn:
                cap_table_as_of(conn, BIG, position)
        for position in positions:
            started = time.perf_counter()
            with engine.connect() as conn:
                table = cap_table_as_of(conn, BIG, position)
            as_of_ms.append((time.perf_counter() - started) * 1000)
            holders.append(table.holder_count)
            digests[position] = digest(holdings_of(table))
        for _ in range(5):
            with engine.connect() as conn:
                current_cap_table(conn, BIG, high)
        for _ in range(CURRENT_QUERIES):
            started = time.perf_counter()
            with engine.connect() as conn:
                current_cap_table(conn, BIG, high)
            current_ms.append((time.perf_counter() - started) * 1000)
        with engine.connect() as conn:
            digests[high] = digest(holdings_of(cap_table_as_of(conn, BIG, high)))
    finally:
        engine.dispose()
    log(
        f"as-of cap table of {BIG}: {len(as_of_ms)} positions in {low}..{high},"
        f" p50 {statistics.median(as_of_ms):.1f} ms, p95 {percentile(as_of_ms, 95):.1f} ms,"
        f" max {max(as_of_ms):.1f} ms; current cap table p50 {statistics.median(current_ms):.1f} ms,"
        f" p95 {percentile(current_ms, 95):.1f} ms"
    )
    return {
        "as_of_ms": as_of_ms,
        "current_ms": current_ms,
        "holders": holders,
        "positions": positions,
        "digests": [[position, value] for position, value in digests.items()],
    }


def measure_as_of(schema: str, history: History) -> AsOfResult:
    measured = run_worker("as_of", schema, {"low": history.onboarded_at, "head": history.head})
    digests = {int(position): str(value) for position, value in measured["digests"]}
    mismatched = verify_as_of(schema, history, digests)
    return AsOfResult(
        measured["as_of_ms"],
        measured["current_ms"],
        measured["holders"],
        len(digests),
        measured["positions"],
        mismatched,
    )


def verify_as_of(schema: str, history: History, digests: dict[int, str]) -> list[int]:
    """Compares every measured as-of cap table (and the head's) with an independent fold of the
    stored events; returns the positions that differ."""
    started = time.perf_counter()
    mismatched: list[int] = []
    for position, holdings in fold_cap_tables(schema, BIG, list(digests)):
        if digest(holdings) != digests[position]:
            mismatched.append(position)
        if position == history.head:
            final = history.assets[BIG]
            expected = {i: (q, final.frozen.get(i, 0)) for i, q in final.balances.items()}
            assert holdings == expected, "the fold of the stored events does not end in the final state"
    log(
        f"as-of cap tables at {len(digests)} positions checked against an independent fold of the stored"
        f" events in {time.perf_counter() - started:.1f}s: {len(mismatched)} differ"
        + (f", first at {min(mismatched)}" if mismatched else "")
    )
    return sorted(mismatched)


# ----- main -----


def table_sizes(schema: str) -> dict[str, float]:
    """Megabytes of the read models' tables and of the event store's, after the catch-up."""
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchall()
    return {
        f"{kind}_mb": round(sum(size for name, size in rows if name.startswith(prefix)) / 2**20, 1)
        for kind, prefix in (("read_model", "rm_"), ("event_store", "ledger_"))
    }


def count_rows(schema: str, table: str, asset_id: str) -> int:
    with psycopg.connect(PG_URL) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.{} WHERE asset_id = %s").format(
                sql.Identifier(schema), sql.Identifier(table)
            ),
            (asset_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def generate(schema: str) -> History:
    app = worker_app(schema)
    try:
        history = History(app, EVENTS, HOLDERS)
        started = time.perf_counter()
        cpu = time.process_time()
        history.generate(lambda message: log(f"generate: {message}"))
        elapsed = time.perf_counter() - started
        log(
            f"generated {history.events} events ({history.kinds.total()} commands, {history.rejected}"
            f" rejected by the rules) in {elapsed:.1f}s = {history.events / elapsed:.0f} events/s;"
            f" cpu {time.process_time() - cpu:.1f}s"
        )
        head = app.admin.head_position()
        assert head == history.head == history.events, (head, history.head, history.events)
        # Release the aggregates' cached snapshots of history; keep the final state for checks.
        history.buffer = []
        history.pending_investments.clear()
        history.distributions = []
    finally:
        app.close()
    return history


def main(explain: bool) -> None:
    overall = time.perf_counter()
    log(f"{EVENTS} events, largest asset {HOLDERS} holders, read batch {READ_BATCH}")
    with scratch_schema(log) as schema:
        history = generate(schema)
        head = history.head
        admin_sql(f'VACUUM (ANALYZE) "{schema}".ledger_events')
        admin_sql(f'VACUUM (ANALYZE) "{schema}".ledger_event_hashes')
        checkpoint()
        raw = run_worker("raw", schema, {"head": head})
        raw_rate = raw["events"] / raw["seconds"]

        from projections.migrate import upgrade
        from projections.schema import engine_for

        engine = engine_for(with_schema(PG_URL, schema))
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        log("read-model tables migrated (empty)")
        checkpoint()
        catch_up = run_worker("catch_up", schema, {"head": head})
        assert catch_up["events"] == head, f"catch-up processed {catch_up['events']} of {head} events"
        assert set(catch_up["positions"].values()) == {head}, catch_up["positions"]
        catch_up_rate = catch_up["events"] / catch_up["seconds"]
        log(f"catch-up: {head} events in {catch_up['seconds']:.1f}s = {catch_up_rate:.0f}/s")
        check_holdings(schema, history, "after catch-up")
        sizes = {
            "captable_checkpoint_rows": count_rows(schema, "rm_captable_snapshots", BIG),
            "holding_change_rows": count_rows(schema, "rm_holding_changes", BIG),
            **table_sizes(schema),
        } if explain else {}
        checkpoint()
        replayed = run_worker("replay", schema, {"head": head})
        assert replayed["reached"] == head, f"replay reached {replayed['reached']}, not {head}"
        log(f"replay: {head} events in {replayed['seconds']:.1f}s, peak RSS {replayed['peak_rss_mb']:.0f} MB")
        check_holdings(schema, history, "after replay")
        as_of = measure_as_of(schema, history)
    code = source_state() if explain else {}
    ratio = catch_up_rate / raw_rate
    measure(
        "project_catch_up", catch_up_rate, "events/s", raw_rate,
        f"raw recorder.select_notifications pages of {READ_BATCH} over the same events",
        f">= {TARGET_CATCH_UP}", ratio >= TARGET_CATCH_UP,
        {"seconds": round(catch_up["seconds"], 2), "cpu_seconds": round(catch_up["cpu_seconds"], 2),
         "raw_read_cpu_seconds": round(raw["cpu_seconds"], 2), "holders": HOLDERS, **sizes, **code}
        if explain else None,
        events=head,
    )
    measure(
        "project_replay", replayed["seconds"], "s", raw["seconds"],
        "raw read of the same events (select_notifications pages)", None, None,
        {"cpu_seconds": round(replayed["cpu_seconds"], 2), **code} if explain else None,
        events=head,
    )
    rss = max(replayed["peak_rss_mb"], replayed["sampled_peak_rss_mb"])
    catch_up_rss = max(catch_up["peak_rss_mb"], catch_up["sampled_peak_rss_mb"])
    measure(
        "project_peak_rss", rss, "MB", raw["peak_rss_mb"],
        "peak RSS of the raw-read process (same imports and store, pages of events)",
        f"< {TARGET_RSS_MB:.0f}", rss < TARGET_RSS_MB,
        {"catch_up_peak_rss_mb": round(catch_up_rss, 1), "catch_up_pass": catch_up_rss < TARGET_RSS_MB,
         **code} if explain else None,
        events=head,
    )
    p95, current_p95 = percentile(as_of.as_of_ms, 95), percentile(as_of.current_ms, 95)
    measure(
        "captable_as_of_p95", p95, "ms", current_p95, f"current cap table (rm_holdings) of {BIG}, p95",
        f"<= {TARGET_AS_OF_P95_MS:.0f}", p95 <= TARGET_AS_OF_P95_MS and not as_of.mismatched,
        {"p50_ms": round(statistics.median(as_of.as_of_ms), 3), "max_ms": round(max(as_of.as_of_ms), 3),
         "baseline_p50_ms": round(statistics.median(as_of.current_ms), 3), "samples": len(as_of.as_of_ms),
         "holders_min": min(as_of.holders), "holders_max": max(as_of.holders),
         "positions": f"{history.onboarded_at}..{head}", "verified_against_fold": as_of.verified, **code}
        if explain else None,
        differing_from_fold=len(as_of.mismatched),
    )
    log(f"done in {time.perf_counter() - overall:.1f}s")


WORKERS: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
    "raw": work_raw,
    "catch_up": work_catch_up,
    "replay": work_replay,
    "as_of": work_as_of,
}


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        worker_main(*sys.argv[2:6])
    else:
        main(arguments(__doc__).explain)
