"""API benchmark (SPEC section 8, "api"): portfolio GET latency and throughput against a
trivial endpoint (`/healthz`) of the same app, served by the same server with the same settings.

Run from the repository root: `.venv/bin/python bench/api.py`.

Everything runs in one fresh PostgreSQL schema (dropped at the end; kept with
`BENCH_KEEP_SCHEMA=1`) of the database named by `LEDGER_BENCH_DATABASE_URL` (default: the
test database); the read models live in the same schema, as by default. PostgreSQL, not
SQLite, because SPEC section 8 states its targets on PostgreSQL.

1. History: `BENCH_EVENTS` events (default 100,000) made by driving the aggregates' own
   command methods in memory (every rule is checked, as in the application) and appending
   each command's events, in command order, with `app.events.put` in batches of
   `BENCH_PUT_BATCH` (as bench/project.py does). Four assets, `BENCH_INVESTORS` investors
   (default 5,000) registered with KYC, each investing in one to four assets (a few
   investments cancelled), then transfers (most of the history), a few token freezes, and
   distributions paid all at once, one holder at a time, or not at all.
2. `ProjectionRunner.catch_up()` of freshly migrated read models, then `ANALYZE` of the
   schema (what autovacuum would soon do), and an admin key (`KeyStore.create("admin")`).
3. The real server in a process of its own: `ledger serve --no-projector --host 127.0.0.1
   --port <free port>` with `LEDGER_DATABASE_URL` (and `LEDGER_READ_DATABASE_URL`) set to
   `postgresql://...?schema=<schema>`: uvicorn, one worker, as deployed.
4. A correctness check: `BENCH_CHECKED` portfolios (default 200) fetched over HTTP equal the
   portfolios computed from the generator's own aggregates (holdings, frozen, money invested,
   dividends paid and pending, value); `as_of_position` is the head.
5. The load, from a client process of its own (`--client`), on loopback: a small asyncio
   HTTP/1.1 client with persistent connections (keep-alive), prebuilt requests and a minimal
   response parser, so that the client costs little CPU per request (measured on this 2-core
   machine: about 0.15 ms per /healthz request, against about 2.4 ms for httpx.AsyncClient,
   which would throttle the trivial endpoint and so flatter the ratio). Each phase warms up
   for `BENCH_WARMUP` s (not counted), then runs for `BENCH_SECONDS` s or `BENCH_MAX_REQUESTS`
   requests, whichever comes first:
   - `/healthz` and `/v1/investors/{id}/portfolio` with `BENCH_CONCURRENCY` (default 16)
     connections, alternating, `BENCH_ROUNDS` rounds (default 3) of `BENCH_SECONDS` s
     (default 4) each, pooled: requests/s, p50/p99;
   - a single connection (one request at a time), `BENCH_SINGLE_REQUESTS` iterations or
     `BENCH_SINGLE_SECONDS` s, each running in a shuffled order: the portfolio over HTTP,
     `/healthz` over HTTP, and the handler's work in the client process without HTTP (the
     router's own functions on an engine made like the server's, and the same five statements
     through plain psycopg): p50/p99 of each, all four under the same moments of the machine.
   Portfolio requests pick uniformly among `BENCH_SAMPLE` investors (default 1,000) who hold
   two or more assets, with an admin key; every 25th response body is parsed and checked.
   Each concurrent phase also records the server's own view (the LatencyMiddleware histogram
   of `/metrics`: mean time inside the app) and the CPU used over the measured window by the
   server process, its PostgreSQL backends, the client, and everything else on the machine
   (/proc/stat): this machine is shared, and what else runs on it shows in the numbers.
6. When a target is missed (or with `BENCH_PROFILE=1`), one more portfolio load runs under py-spy
   (`BENCH_PYSPY`, default /tmp/pyspy/bin/py-spy; samples of the server process while it holds
   the GIL) and its hotspots go to stderr and `BENCH_PROFILE_DIR`. In any case, after the server is stopped,
   the handler's work is broken down in-process: the statements its worker-thread path sends
   (SQLAlchemy; what SQLite, or an app without its event-loop read pool, uses; a libpq trace),
   its time and CPU on an engine like the server's and on one without a pool of that size, and
   the same one statement through plain psycopg (interleaved),
   its rate on `BENCH_CONCURRENCY` threads with the new pool connections that costs, and a
   cProfile.

stdout carries one JSON object per measure and nothing else; progress goes to stderr:
`api_portfolio_p99` (single connection, target <= 10 ms; baseline the `/healthz` p99 over a
single connection), `api_portfolio_throughput` (requests/s at `BENCH_CONCURRENCY`
connections, target >= 0.5 x `/healthz` at the same concurrency) and
`api_portfolio_p99_concurrent` (informational).

`--analytics` runs only the analytics measures; `--lists` only the lists: a history of one asset
and 10,000 investors, the first of them with 10,000 movements (an issuance, then a token to each
of the others in turn), then `api_statement_first_page_p99` and `api_statement_last_page_p99`
(100 movements a page, target <= 20 ms; baseline the `/healthz` p99, interleaved on one
connection) and `api_investor_list_rate` (all 10,000 investors paged through 500 at a time, rows
per second, target >= 0.5 x one raw SELECT of the same rows and columns, interleaved; the same
pages read straight from the database are reported beside it). `--lists --explain` adds to it
where a walk's time goes and the floor of a walk on this stack (`lists_floor`).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import http.client
import io
import json
import os
import pstats
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from eventsourcing.domain import Aggregate
from psycopg import sql

from common import PG_URL, ROOT, emit, logger, percentile, scratch_schema, with_schema
from ledger.application import LedgerApplication, validate_asset_terms
from ledger.config import store_env
from ledger.domain import values as v
from ledger.domain.asset import Asset
from ledger.domain.distribution import Distribution
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor, WalletClaim
from ledger.errors import LedgerError

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
INVESTORS = int(os.environ.get("BENCH_INVESTORS", "5000"))
PUT_BATCH = int(os.environ.get("BENCH_PUT_BATCH", "5000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))  # per concurrent phase
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "50000"))  # per concurrent phase
WARMUP = float(os.environ.get("BENCH_WARMUP", "1"))
SINGLE_SECONDS = float(os.environ.get("BENCH_SINGLE_SECONDS", "12"))
SINGLE_REQUESTS = int(os.environ.get("BENCH_SINGLE_REQUESTS", "2000"))  # of each variant
SAMPLE = int(os.environ.get("BENCH_SAMPLE", "1000"))
CHECKED = int(os.environ.get("BENCH_CHECKED", "200"))
PROFILE_SECONDS = float(os.environ.get("BENCH_PROFILE_SECONDS", "7"))  # per endpoint
PYSPY_RATE = 200
PYSPY = Path(os.environ.get("BENCH_PYSPY", "/tmp/pyspy/bin/py-spy"))
PROFILE_DIR = Path(os.environ.get("BENCH_PROFILE_DIR", "/tmp"))
KEEP_SCHEMA = os.environ.get("BENCH_KEEP_SCHEMA") == "1"
FORCE_PROFILE = os.environ.get("BENCH_PROFILE") == "1"  # profile the server even when targets are met
SEED = int(os.environ.get("BENCH_SEED", "20261122"))
HOST = "127.0.0.1"
IN_PROCESS_REQUESTS = 400
VALIDATE_EVERY = 25
PHASE_TIMEOUT_SLACK = 60.0

TARGET_P99_MS = 10.0  # portfolio GET p99 <= 10 ms
TARGET_THROUGHPUT = 0.5  # portfolio requests/s >= 0.5 x /healthz requests/s

PORTFOLIO_ROUTE = "/v1/investors/{investor_id}/portfolio"
# The fields of a position the generator computes (not the returns and rates).
ANALYTICS_FREE = (
    "asset_id",
    "quantity",
    "frozen",
    "invested_amount",
    "dividends_paid",
    "dividends_pending",
    "value",
)
HEALTH_ROUTE = "/healthz"


log = logger("api")


# ----- the history: aggregates driven in memory, events appended in big batches -----


@dataclass
class AssetPlan:
    terms: dict[str, Any]
    hold_share: float  # share of the eligible investors who invest in it
    transfer_weight: float  # share of the transfers
    quantity: tuple[int, int]  # base units bought per investment
    pool: list[str] = field(default_factory=list)  # eligible investors
    holders: list[str] = field(default_factory=list)  # everyone who ever held it (to pick senders)


def asset_plans() -> list[AssetPlan]:
    common = {"decimals": 0, "currency": "IDR"}
    return [
        AssetPlan(
            {
                **common,
                "asset_id": "TOLL-JKT-01",
                "name": "Jakarta outer ring toll road",
                "symbol": "TJK",
                "unit_price": 100_000,
                "authorized_supply": 10**12,
                "min_investment": 100_000,
                "max_investment": 10**13,
            },
            0.75,
            0.55,
            (200, 5_000),
        ),
        AssetPlan(
            {
                **common,
                "asset_id": "WATER-SBY-02",
                "name": "Surabaya water treatment plant",
                "symbol": "WSB",
                "decimals": 2,
                "unit_price": 2_500_000,
                "authorized_supply": 10**14,
                "min_investment": 1_000_000,
                "max_investment": 10**13,
            },
            0.45,
            0.25,
            (10_000, 500_000),
        ),
        AssetPlan(
            {
                **common,
                "asset_id": "RENT-BDG-03",
                "name": "Bandung rental apartments",
                "symbol": "RBD",
                "currency": "USD",
                "unit_price": 10_000,
                "authorized_supply": 10**9,
                "min_investment": 10_000,
                "max_investment": 10**10,
                "allowed_countries": ["ID", "SG", "MY"],
                "accredited_only": True,
            },
            0.6,
            0.12,
            (50, 2_000),
        ),
        AssetPlan(
            {
                **common,
                "asset_id": "SOLAR-BALI-04",
                "name": "Bali solar farm",
                "symbol": "SBL",
                "unit_price": 1_000_000,
                "authorized_supply": 10**9,
                "min_investment": 1_000_000,
                "max_investment": 10**12,
            },
            0.3,
            0.08,
            (100, 3_000),
        ),
    ]


@dataclass
class Pending:
    investment: Investment
    accepted_amount: int


class History:
    """Drives the aggregates' command methods like the application does, one command at a time;
    each command's events are appended, in order, with those of the commands before it."""

    def __init__(self, app: LedgerApplication, target: int, investors: int) -> None:
        self.app = app
        self.target = target
        self.investor_count = investors
        self.rng = random.Random(SEED)
        self.now = datetime.now(tz=UTC)
        self.plans = asset_plans()
        self.weights = [p.transfer_weight for p in self.plans]
        self.assets: dict[str, Asset] = {}
        self.investors: dict[str, Investor] = {}
        self.pending: deque[Pending] = deque()
        self.invested: dict[tuple[str, str], int] = defaultdict(int)  # (asset, investor) -> accepted
        self.distributions: list[Distribution] = []
        self.paying: deque[tuple[Distribution, deque[str]]] = deque()
        self.buffer: list[Any] = []
        self.events = 0
        self.head = 0
        self.rejected = 0
        self.kinds: dict[str, int] = defaultdict(int)

    # ----- plumbing -----

    def commit(self, kind: str, *aggregates: Aggregate) -> None:
        before = len(self.buffer)
        for aggregate in aggregates:
            self.buffer.extend(aggregate.collect_events())
        added = len(self.buffer) - before
        assert added, f"{kind} recorded nothing"
        self.events += added
        self.kinds[kind] += 1
        if len(self.buffer) >= PUT_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            recordings = self.app.events.put(self.buffer)
            self.head = recordings[-1].notification.id
            self.buffer = []

    def attempt(self, kind: str, command: Callable[[], tuple[Aggregate, ...]]) -> bool:
        try:
            touched = command()
        except LedgerError:
            self.rejected += 1
            return False
        self.commit(kind, *touched)
        return True

    # ----- commands -----

    def register_asset(self, plan: AssetPlan) -> None:
        asset = Asset.register(**validate_asset_terms(plan.terms))
        self.assets[asset.asset_id] = asset
        self.commit("register_asset", asset)
        asset.approve()
        self.commit("approve_asset", asset)
        asset.set_offering(True)
        self.commit("set_offering", asset)

    def register_investor(self, number: int) -> Investor:
        investor_id = f"inv-{number:06d}"
        roll = self.rng.random()
        country = "ID" if roll < 0.85 else "SG" if roll < 0.93 else "MY" if roll < 0.97 else "AU"
        wallet = v.wallet("0x" + uuid.UUID(int=self.rng.getrandbits(128)).hex + f"{number:08x}")
        claim = WalletClaim.claim(wallet, investor_id)
        investor = Investor.register(investor_id, country, wallet, self.rng.random() < 0.3)
        self.investors[investor_id] = investor
        self.commit("register_investor", claim, investor)
        return investor

    def place(self, asset: Asset, investor_id: str, quantity: int) -> bool:
        investor = self.investors[investor_id]
        scale = 10**asset.decimals
        amount = -(-quantity * asset.unit_price // scale) + self.rng.randrange(
            max(1, asset.unit_price // scale)
        )

        def command() -> tuple[Aggregate, ...]:
            purchase = asset.check_investment(investor_id, investor.eligible_for(asset, self.now), amount)
            investment = Investment.place(investor_id, asset.asset_id, amount, purchase)
            asset.reserve(investment.id, investor_id, purchase.quantity)
            self.pending.append(Pending(investment, purchase.accepted_amount))
            return asset, investment

        return self.attempt("place_investment", command)

    def settle_oldest(self) -> None:
        pending = self.pending.popleft()
        investment = pending.investment
        asset = self.assets[investment.asset_id]
        investment.check_pending()
        asset.check_reservation(investment.investor_id, investment.quantity)
        if self.rng.random() < 0.02:
            investment.cancel()
            asset.release(investment.id, investment.investor_id, investment.quantity)
            self.commit("cancel_investment", investment, asset)
            return
        investment.confirm_payment(f"PAY-{investment.id.hex[:12].upper()}")
        asset.issue(investment.id, investment.investor_id, investment.quantity, self.now)
        self.commit("confirm_payment", investment, asset)
        self.invested[(asset.asset_id, investment.investor_id)] += pending.accepted_amount
        self.plan_of(asset.asset_id).holders.append(investment.investor_id)

    def plan_of(self, asset_id: str) -> AssetPlan:
        return next(p for p in self.plans if p.terms["asset_id"] == asset_id)

    def pick_holder(self, asset: Asset) -> str | None:
        holders = self.plan_of(asset.asset_id).holders
        for _ in range(8):
            investor_id = self.rng.choice(holders)
            if asset.balances.get(investor_id, 0) > 0:
                return investor_id
        return None

    def transfer(self) -> None:
        plan = self.rng.choices(self.plans, self.weights)[0]
        asset = self.assets[plan.terms["asset_id"]]
        sender = self.pick_holder(asset)
        if sender is None:
            self.rejected += 1
            return
        receiver = self.rng.choice(plan.pool)
        quantity = self.rng.randint(1, max(1, asset.balances[sender] // 20))
        eligible = self.investors[receiver].eligible_for(asset, self.now)
        held = asset.balances[sender]

        def command() -> tuple[Aggregate, ...]:
            asset.transfer(sender, receiver, quantity, eligible, self.now)
            return (asset,)

        if self.attempt("transfer", command):
            # average cost: the tokens take their share of the sender's cost and enter the
            # receiver's at the unit price (this history has no valuations)
            cost = self.invested[(asset.asset_id, sender)] * quantity // held
            self.invested[(asset.asset_id, sender)] -= cost
            self.invested[(asset.asset_id, receiver)] += quantity * asset.unit_price // 10**asset.decimals
            if asset.balances.get(receiver, 0) == quantity:
                plan.holders.append(receiver)  # a new holder

    def freeze(self) -> None:
        plan = self.rng.choices(self.plans, self.weights)[0]
        asset = self.assets[plan.terms["asset_id"]]
        holder = self.pick_holder(asset)
        if holder is None:
            return
        free = asset.balances.get(holder, 0) - asset.frozen.get(holder, 0)

        def command() -> tuple[Aggregate, ...]:
            asset.freeze_tokens(holder, self.rng.randint(1, max(1, free // 4)))
            return (asset,)

        self.attempt("freeze_tokens", command)

    def declare(self, asset_id: str, amount: int, one_by_one: int, pay_rest: bool) -> None:
        asset = self.assets[asset_id]
        distribution = Distribution.declare(asset_id, amount, None, asset.version, asset.balances)
        self.commit("declare_distribution", distribution)
        self.distributions.append(distribution)
        holders = sorted(distribution.entitlements)
        self.rng.shuffle(holders)
        queue = deque(holders[: min(one_by_one, len(holders) - 1)])
        if pay_rest:
            queue.append("")  # then everyone else at once
        if queue:
            self.paying.append((distribution, queue))

    def pay_next(self) -> None:
        distribution, queue = self.paying[0]
        investor_id = queue.popleft()
        distribution.pay(investor_id or None)
        self.commit("pay_distribution", distribution)
        if not queue:
            self.paying.popleft()

    # ----- the story -----

    def generate(self) -> None:
        started = time.perf_counter()
        for plan in self.plans:
            self.register_asset(plan)
        kyc: deque[Investor] = deque()
        for number in range(1, self.investor_count + 1):
            kyc.append(self.register_investor(number))
            while len(kyc) > 50 or (number == self.investor_count and kyc):
                investor = kyc.popleft()
                if self.rng.random() < 0.99:  # the rest stay pending
                    expires = datetime(2031, 1, 1, tzinfo=UTC) if self.rng.random() < 0.3 else None
                    investor.update_kyc("approved", expires)
                    self.commit("update_kyc", investor)
        for plan in self.plans:
            probe = self.assets[plan.terms["asset_id"]]
            plan.pool = [i for i, x in self.investors.items() if x.eligible_for(probe, self.now)]
        orders: list[tuple[AssetPlan, str]] = []
        for investor_id in self.investors:
            chosen = [p for p in self.plans if investor_id in p.pool and self.rng.random() < p.hold_share]
            if not chosen and investor_id in self.plans[0].pool:
                chosen = [self.plans[0]]
            orders.extend((p, investor_id) for p in chosen)
        self.rng.shuffle(orders)
        for plan, investor_id in orders:
            asset = self.assets[plan.terms["asset_id"]]
            for _ in range(3):  # an amount the rules reject is placed again
                if self.place(asset, investor_id, self.rng.randint(*plan.quantity)):
                    break
            if len(self.pending) > 200:
                self.settle_oldest()
        while self.pending:
            self.settle_oldest()
        onboarded = self.events
        log(
            f"generate: onboarding {onboarded} events in {time.perf_counter() - started:.1f}s, holders "
            + ", ".join(f"{a}={len(x.balances)}" for a, x in self.assets.items())
        )
        toll, water, rent, solar = (p.terms["asset_id"] for p in self.plans)
        remaining = max(0, self.target - self.events)
        schedule: list[tuple[int, Callable[[], None]]] = [
            (int(onboarded + remaining * share), action)
            for share, action in (
                (0.15, lambda: self.declare(toll, 7_500_000_000_000, 0, True)),
                (0.35, lambda: self.declare(water, 1_234_567_890_123, 300, True)),
                (0.55, lambda: self.declare(rent, 98_765_432, 50, False)),
                (0.70, lambda: self.declare(solar, 555_000_000_000, 0, True)),
                (0.85, lambda: self.declare(toll, 9_000_000_000_000, 400, False)),
            )
        ]
        next_report = self.events + remaining // 4
        while self.events < self.target:
            while schedule and self.events >= schedule[0][0]:
                schedule.pop(0)[1]()
            roll = self.rng.random() * 100
            if self.paying and roll < 3:
                self.pay_next()
            elif roll < 3.3:
                self.freeze()
            else:
                self.transfer()
            if self.events >= next_report:
                log(f"generate: {self.events} events in {time.perf_counter() - started:.1f}s")
                next_report += max(1, remaining // 4)
        while schedule:
            schedule.pop(0)[1]()
        self.flush()
        log(
            f"generate: {self.events} events ({sum(self.kinds.values())} commands, {self.rejected}"
            f" rejected by the rules) in {time.perf_counter() - started:.1f}s; "
            + ", ".join(f"{k}={n}" for k, n in sorted(self.kinds.items(), key=lambda x: -x[1]))
        )

    # ----- what the portfolio of an investor must be, from the aggregates -----

    def expected_portfolio(self, investor_id: str) -> list[dict[str, str]]:
        paid: dict[str, int] = defaultdict(int)
        pending: dict[str, int] = defaultdict(int)
        for distribution in self.distributions:
            amount = distribution.entitlements.get(investor_id)
            if amount is not None:
                target = paid if distribution.paid.get(investor_id) else pending
                target[distribution.asset_id] += amount
        positions = []
        for asset_id in sorted(self.assets):
            asset = self.assets[asset_id]
            quantity = asset.balances.get(investor_id, 0)
            invested = self.invested.get((asset_id, investor_id), 0)
            row = {
                "asset_id": asset_id,
                "quantity": quantity,
                "frozen": asset.frozen.get(investor_id, 0),
                "invested_amount": invested,
                "dividends_paid": paid[asset_id],
                "dividends_pending": pending[asset_id],
                "value": quantity * asset.unit_price // 10**asset.decimals,
            }
            if quantity or invested or paid[asset_id] or pending[asset_id]:
                positions.append({k: x if k == "asset_id" else str(x) for k, x in row.items()})
        return positions

    def multi_asset_holders(self) -> list[str]:
        count: dict[str, int] = defaultdict(int)
        for asset in self.assets.values():
            for investor_id, quantity in asset.balances.items():
                if quantity > 0:
                    count[investor_id] += 1
        return sorted(i for i, n in count.items() if n >= 2)


@dataclass
class Prepared:
    head: int
    sample: list[str]
    expected: dict[str, list[dict[str, str]]]
    events: int
    generate_seconds: float
    holdings_per_sampled: float


def generate(schema: str) -> Prepared:
    app = LedgerApplication(store_env(with_schema(PG_URL, schema)))
    try:
        started = time.perf_counter()
        history = History(app, EVENTS, INVESTORS)
        history.generate()
        seconds = time.perf_counter() - started
        head = app.admin.head_position()
        assert head == history.head == history.events, (head, history.head, history.events)
        candidates = history.multi_asset_holders()
        rng = random.Random(SEED + 1)
        sample = sorted(rng.sample(candidates, min(SAMPLE, len(candidates))))
        expected = {i: history.expected_portfolio(i) for i in sample}
        held = [sum(1 for p in expected[i] if p["quantity"] != "0") for i in sample]
        log(
            f"{len(candidates)} investors hold two or more assets; sampled {len(sample)}"
            f" (holding {statistics.fmean(held):.2f} assets on average, max {max(held)})"
        )
    finally:
        app.close()
    return Prepared(head, sample, expected, history.events, seconds, statistics.fmean(held))


def project(schema: str, head: int) -> tuple[str, float]:
    """Migrates and catches up the read models; returns an admin key and the catch-up seconds."""
    from adapters.api.keys import KeyStore
    from projections.migrate import upgrade
    from projections.runner import ProjectionRunner
    from projections.schema import engine_for

    url = with_schema(PG_URL, schema)
    app = LedgerApplication(store_env(url))
    engine = engine_for(url)
    try:
        upgrade(engine)
        runner = ProjectionRunner(app, engine)
        started = time.perf_counter()
        events = runner.catch_up()
        seconds = time.perf_counter() - started
        assert events == head, f"catch-up processed {events} of {head} events"
        assert set(runner.positions().values()) == {head}, runner.positions()
        log(f"catch-up: {events} events in {seconds:.1f}s = {events / seconds:.0f}/s")
        key = KeyStore(engine).create("admin")
    finally:
        app.close()
        engine.dispose()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        ).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
    log(f"ANALYZE of {len(tables)} tables; admin key created")
    return key, seconds


# ----- the server -----


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def ledger_command() -> list[str]:
    script = Path(sys.executable).parent / "ledger"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from adapters.cli import main; main()"]


@contextmanager
def server(schema: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    url = with_schema(PG_URL, schema)
    env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_READ_DATABASE_URL": url}
    command = [*ledger_command(), "serve", "--no-projector", "--host", HOST, "--port", str(port)]
    log(f"starting: {' '.join(command)} (LEDGER_DATABASE_URL={url})")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                msg = f"the server exited with code {process.returncode} before it answered"
                raise RuntimeError(msg)
            try:
                status, _ = http_get(port, HEALTH_ROUTE, None)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                msg = "the server did not answer /healthz within 60 s"
                raise RuntimeError(msg)
            time.sleep(0.1)
        log(f"server pid {process.pid} listening on {HOST}:{port}")
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log(f"server stopped (exit code {process.returncode})")


def http_get(port: int, path: str, key: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_portfolios(port: int, key: str, prepared: Prepared) -> int:
    """Portfolios over HTTP equal those computed from the aggregates."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    rng = random.Random(SEED + 2)
    checked = rng.sample(prepared.sample, min(CHECKED, len(prepared.sample)))
    try:
        for investor_id in checked:
            conn.request(
                "GET", f"/v1/investors/{investor_id}/portfolio", headers={"Authorization": f"Bearer {key}"}
            )
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, (investor_id, response.status, body)
            assert body["investor_id"] == investor_id, body
            assert body["as_of_position"] == prepared.head, (body["as_of_position"], prepared.head)
            shown = [{k: p[k] for k in ANALYTICS_FREE} for p in body["positions"]]
            assert shown == prepared.expected[investor_id], (
                investor_id,
                shown,
                prepared.expected[investor_id],
            )
    finally:
        conn.close()
    log(f"{len(checked)} portfolios over HTTP equal the aggregates' (as of position {prepared.head})")
    return len(checked)


# ----- the load client (a process of its own) -----


@dataclass
class PhaseSpec:
    name: str
    kind: str  # "healthz" or "portfolio"
    concurrency: int
    seconds: float
    max_requests: int
    warmup: float


@dataclass
class PhaseStats:
    latencies_ns: list[int] = field(default_factory=list)
    completed_in_window: int = 0
    issued: int = 0
    errors: int = 0
    first_error: str | None = None
    validated: int = 0
    window_end: float = 0.0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        msg = f"response without content-length: {head[:200]!r}"
        raise RuntimeError(msg)
    end = lowered.find(b"\r\n", at + 2)
    body = await reader.readexactly(int(lowered[at + 17 : end]))
    return status, body


async def scrape(port: int) -> dict[tuple[str, str], float]:
    """The server's LatencyMiddleware histogram: (route, series) -> value, GET 200 only."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        status, body = await read_response(reader)
    finally:
        writer.close()
    assert status == 200, status
    found: dict[tuple[str, str], float] = {}
    for line in body.decode().splitlines():
        if not line.startswith("ledger_http_request_seconds_") or 'method="GET"' not in line:
            continue
        if 'status="200"' not in line:
            continue
        series, rest = line.split("{", 1)
        labels, value = rest.rsplit("} ", 1)
        route = labels.split('route="', 1)[1].split('"', 1)[0]
        name = series.removeprefix("ledger_http_request_seconds_")
        if name == "bucket":
            name = "le=" + labels.split('le="', 1)[1].split('"', 1)[0]
        found[(route, name)] = float(value)
    return found


@dataclass
class Probe:
    """CPU seconds used so far by the server process, its PostgreSQL backends and this client."""

    server: float
    postgres: dict[int, float]
    client: float
    at: float
    machine: tuple[float, float]  # busy and steal CPU seconds of the whole machine (/proc/stat)


def machine_cpu() -> tuple[float, float]:
    """Busy (user, nice, system, irq, softirq, steal) and steal CPU seconds since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]
    hz = os.sysconf("SC_CLK_TCK")
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / hz, ticks[7] / hz


class Prober:
    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)
        self.conn = psycopg.connect(PG_URL, autocommit=True)

    def backends(self) -> dict[int, datetime]:
        """The server's PostgreSQL backends (matched by its connections' local ports)."""
        ports = [
            c.laddr.port
            for c in self.server.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == 5432 and c.status == psutil.CONN_ESTABLISHED
        ]
        rows = self.conn.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE client_port = ANY(%s)", (ports,)
        ).fetchall()
        return {int(pid): started for pid, started in rows}

    def probe(self) -> Probe:
        postgres = {}
        for pid in self.backends():
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            postgres[pid] = times.user + times.system
        times = self.server.cpu_times()
        return Probe(
            times.user + times.system, postgres, time.process_time(), time.perf_counter(), machine_cpu()
        )

    def close(self) -> None:
        self.conn.close()


def cpu_between(before: Probe, after: Probe) -> tuple[float, float, float]:
    """Server, PostgreSQL (the server's backends; new ones count from zero) and client CPU seconds."""
    postgres = sum(seconds - before.postgres.get(pid, 0.0) for pid, seconds in after.postgres.items())
    return after.server - before.server, postgres, after.client - before.client


async def run_phase(
    spec: PhaseSpec, port: int, key: str, investors: list[str], seed: int, prober: Prober
) -> tuple[PhaseStats, Probe, Probe]:
    if spec.kind == "healthz":
        requests = [f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()]
    else:
        requests = [
            (
                f"GET /v1/investors/{i}/portfolio HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Authorization: Bearer {key}\r\n\r\n"
            ).encode()
            for i in investors
        ]
    stats = PhaseStats()
    connections = [await asyncio.open_connection(HOST, port) for _ in range(spec.concurrency)]
    started = time.perf_counter()
    measure_from = started + spec.warmup
    measure_from_ns = int(measure_from * 1e9)
    deadline = measure_from + spec.seconds
    perf_ns = time.perf_counter_ns
    probes: list[Probe] = []

    async def worker(number: int) -> None:
        reader, writer = connections[number]
        rng = random.Random(seed * 1000 + number)
        count = 0
        while True:
            if time.perf_counter() >= deadline or stats.issued >= spec.max_requests:
                break
            index = rng.randrange(len(requests))
            if not probes and perf_ns() >= measure_from_ns:
                probes.append(prober.probe())  # the window opens (a few ms, once, not timed)
            t0 = perf_ns()
            measured = t0 >= measure_from_ns
            if measured:
                stats.issued += 1
            writer.write(requests[index])
            status, body = await read_response(reader)
            t1 = perf_ns()
            if status != 200:
                stats.errors += 1
                if stats.first_error is None:
                    stats.first_error = f"{status} {body[:300]!r}"
            if measured:
                stats.latencies_ns.append(t1 - t0)
                stats.completed_in_window += 1
            count += 1
            if spec.kind == "portfolio" and count % VALIDATE_EVERY == 0 and status == 200:
                payload = json.loads(body)
                assert payload["investor_id"] == investors[index], payload
                assert len(payload["positions"]) >= 2, payload
                stats.validated += 1
        stats.window_end = max(stats.window_end, time.perf_counter())
        writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(n) for n in range(spec.concurrency))),
        timeout=spec.warmup + spec.seconds + PHASE_TIMEOUT_SLACK,
    )
    end = prober.probe()
    assert probes, "no request was measured"
    stats.window_end -= probes[0].at
    return stats, probes[0], end


SINGLE_VARIANTS = ("http_portfolio", "http_healthz", "in_process_sqlalchemy", "in_process_raw_psycopg")


async def run_single(
    spec: PhaseSpec, port: int, key: str, investors: list[str], seed: int, schema: str
) -> dict[str, Any]:
    """One request at a time, the four variants in a shuffled order in every iteration: the
    portfolio over HTTP, /healthz over HTTP (each on its own keep-alive connection), and the
    handler's work in this process (its SQLAlchemy path, and plain psycopg), so that all four see the
    same moments of the machine."""
    from projections.schema import engine_for

    handler = portfolio_handler()
    engine = engine_for(with_schema(PG_URL, schema))
    raw_conn = raw_connection(schema)
    raw = raw_portfolio(raw_conn)
    folio = [
        (
            f"GET /v1/investors/{i}/portfolio HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {key}\r\n\r\n"
        ).encode()
        for i in investors
    ]
    health = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    folio_conn = await asyncio.open_connection(HOST, port)
    health_conn = await asyncio.open_connection(HOST, port)
    errors: list[str] = []

    async def http(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> None:
        conn[1].write(request)
        status, body = await read_response(conn[0])
        if status != 200:
            errors.append(f"{status} {body[:300]!r}")

    rng = random.Random(seed)
    samples: dict[str, list[float]] = {k: [] for k in SINGLE_VARIANTS}
    measure_from = time.perf_counter() + spec.warmup
    deadline = measure_from + spec.seconds
    machine = machine_cpu()
    load_average = os.getloadavg()[0]
    try:
        while time.perf_counter() < deadline and len(samples["http_portfolio"]) < spec.max_requests:
            index = rng.randrange(len(investors))
            measured = time.perf_counter() >= measure_from
            order = list(SINGLE_VARIANTS)
            rng.shuffle(order)
            for variant in order:
                started = time.perf_counter_ns()
                if variant == "http_portfolio":
                    await http(folio_conn, folio[index])
                elif variant == "http_healthz":
                    await http(health_conn, health)
                elif variant == "in_process_sqlalchemy":
                    handler(engine, investors[index])
                else:
                    raw(investors[index])
                if measured:
                    samples[variant].append((time.perf_counter_ns() - started) / 1e6)
    finally:
        folio_conn[1].close()
        health_conn[1].close()
        engine.dispose()
        raw_conn.close()
    wall = time.perf_counter() - measure_from + spec.warmup
    busy = (machine_cpu()[0] - machine[0]) / wall
    line = ", ".join(
        f"{k} {statistics.median(x):.2f}/{percentile(x, 99):.2f}" for k, x in samples.items() if x
    )
    print(
        f"[bench/api] {spec.name}: p50/p99 ms {line} ({len(samples['http_portfolio'])} each,"
        f" {len(errors)} errors); machine busy {busy:.2f} cores; load average {load_average:.1f}",
        file=sys.stderr,
        flush=True,
    )
    return {
        "name": spec.name,
        "kind": spec.kind,
        "concurrency": 1,
        "samples": samples,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "machine_busy_cores": busy,
        "load_average_1m": load_average,
    }


async def client_phases(args: dict[str, Any]) -> list[dict[str, Any]]:
    port, key, investors = args["port"], args["key"], args["investors"]
    prober = Prober(args["server_pid"])
    results = []
    try:
        for number, raw in enumerate(args["phases"]):
            spec = PhaseSpec(**raw)
            if spec.kind == "single":
                results.append(await run_single(spec, port, key, investors, SEED + number, args["schema"]))
                continue
            before_metrics = await scrape(port)
            load_before = os.getloadavg()[0]
            backends_before = prober.backends()
            stats, first, last = await run_phase(spec, port, key, investors, SEED + number, prober)
            backends_after = prober.backends()
            after_metrics = await scrape(port)
            results.append(
                phase_result(spec, stats, first, last, before_metrics, after_metrics, load_before)
                | {
                    "server_backends": len(backends_after),
                    "server_backends_new": len(backends_after.keys() - backends_before.keys()),
                }
            )
    finally:
        prober.close()
    return results


def phase_result(
    spec: PhaseSpec,
    stats: PhaseStats,
    first: Probe,
    last: Probe,
    before_metrics: dict[tuple[str, str], float],
    after_metrics: dict[tuple[str, str], float],
    load_average: float,
) -> dict[str, Any]:
    route = HEALTH_ROUTE if spec.kind == "healthz" else PORTFOLIO_ROUTE

    def delta(series: str) -> float:
        return after_metrics.get((route, series), 0.0) - before_metrics.get((route, series), 0.0)

    served = delta("count")
    latencies_ms = [ns / 1e6 for ns in stats.latencies_ns]
    wall = last.at - first.at
    server_cpu, postgres_cpu, client_cpu = cpu_between(first, last)
    done = max(1, stats.completed_in_window)
    result = {
        "name": spec.name,
        "kind": spec.kind,
        "concurrency": spec.concurrency,
        "requests": len(latencies_ms),
        "completed_in_window": stats.completed_in_window,
        "window_seconds": stats.window_end,
        "rps": stats.completed_in_window / stats.window_end,
        "errors": stats.errors,
        "first_error": stats.first_error,
        "validated": stats.validated,
        "latencies_ms": latencies_ms,
        "server_mean_ms": delta("sum") / served * 1000 if served else None,
        "server_share_le_10ms": delta("le=0.01") / served if served else None,
        "server_cpu_cores": server_cpu / wall,
        "postgres_cpu_cores": postgres_cpu / wall,
        "client_cpu_cores": client_cpu / wall,
        "machine_busy_cores": (last.machine[0] - first.machine[0]) / wall,
        "machine_steal_cores": (last.machine[1] - first.machine[1]) / wall,
        "others_cpu_cores": (last.machine[0] - first.machine[0] - server_cpu - postgres_cpu - client_cpu)
        / wall,
        "server_cpu_ms_per_request": server_cpu / done * 1000,
        "postgres_cpu_ms_per_request": postgres_cpu / done * 1000,
        "client_cpu_ms_per_request": client_cpu / done * 1000,
        "load_average_1m": load_average,
    }
    print(
        f"[bench/api] {spec.name}: {result['rps']:.0f} req/s,"
        f" p50 {statistics.median(latencies_ms):.2f} ms, p99 {percentile(latencies_ms, 99):.2f} ms"
        f" ({len(latencies_ms)} requests, {stats.errors} errors); server-side mean"
        f" {result['server_mean_ms'] or 0:.2f} ms; cpu ms/request: server"
        f" {result['server_cpu_ms_per_request']:.2f}, postgres {result['postgres_cpu_ms_per_request']:.2f},"
        f" client {result['client_cpu_ms_per_request']:.2f}; cores: server {result['server_cpu_cores']:.2f},"
        f" postgres {result['postgres_cpu_cores']:.2f}, everything else on the machine"
        f" {result['others_cpu_cores']:.2f} (steal {result['machine_steal_cores']:.2f});"
        f" load average {load_average:.1f}",
        file=sys.stderr,
        flush=True,
    )
    return result


def client_main(args_path: str, result_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    gc.collect()
    gc.freeze()
    results = asyncio.run(client_phases(args))
    Path(result_path).write_text(json.dumps(results))


def run_client(
    port: int, key: str, server_pid: int, schema: str, investors: list[str], phases: list[PhaseSpec]
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        args_path, result_path = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args = {
            "port": port,
            "key": key,
            "server_pid": server_pid,
            "schema": schema,
            "investors": investors,
            "phases": [spec.__dict__ for spec in phases],
        }
        args_path.write_text(json.dumps(args))
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--client",
            str(args_path),
            str(result_path),
        ]
        budget = sum(p.warmup + p.seconds + PHASE_TIMEOUT_SLACK for p in phases)
        completed = subprocess.run(command, stdout=sys.stderr, cwd=ROOT, timeout=budget, check=False)
        if completed.returncode != 0:
            msg = f"the load client failed with exit code {completed.returncode}"
            raise RuntimeError(msg)
        results: list[dict[str, Any]] = json.loads(result_path.read_text())
    return results


class Latency:
    def __init__(self, samples: list[float]) -> None:
        self.count = len(samples)
        self.p50 = statistics.median(samples)
        self.p99 = percentile(samples, 99)
        self.max = max(samples)


@dataclass
class Pooled:
    rps: float
    p50: float
    p99: float
    requests: int
    errors: int
    phases: list[dict[str, Any]]

    def per_request(self, key: str) -> float | None:
        """A per-request figure of the phases, weighted by their requests."""
        done = sum(p["completed_in_window"] for p in self.phases)
        return sum(p[key] * p["completed_in_window"] for p in self.phases) / done if done else None

    def mean(self, key: str) -> float | None:
        values = [p[key] for p in self.phases if p[key] is not None]
        return statistics.fmean(values) if values else None


def pool(phases: list[dict[str, Any]]) -> Pooled:
    latencies = [x for phase in phases for x in phase["latencies_ms"]]
    rps = sum(p["completed_in_window"] for p in phases) / sum(p["window_seconds"] for p in phases)
    return Pooled(
        rps,
        statistics.median(latencies),
        percentile(latencies, 99),
        len(latencies),
        sum(p["errors"] for p in phases),
        phases,
    )


# ----- profiles: py-spy of the server under load, the handler's work in-process -----


def package_of(frame: str) -> str:
    location = frame.rsplit("(", 1)[-1]
    for marker, name in (
        ("/sqlalchemy/", "sqlalchemy"),
        ("/psycopg/", "psycopg"),
        ("/psycopg_binary/", "psycopg"),
        ("/psycopg_pool/", "psycopg"),
        ("/starlette/", "starlette"),
        ("/fastapi/", "fastapi"),
        ("/uvicorn/", "uvicorn"),
        ("/h11/", "h11"),
        ("/anyio/", "anyio"),
        ("/pydantic", "pydantic"),
        ("/prometheus_client/", "prometheus_client"),
        ("/asyncio/", "asyncio"),
        ("/json/", "json"),
        ("/src/adapters/", "adapters (src)"),
        ("/src/projections/", "projections (src)"),
        ("/src/ledger/", "ledger (src)"),
        ("/concurrent/", "threading"),
        ("threading.py", "threading"),
    ):
        if marker in location:
            return name
    return "other"


def short(frame: str) -> str:
    name, _, location = frame.partition(" (")
    path = location.rstrip(")")
    parts = path.split("/")
    for anchor in ("site-packages", "src", "python3.11"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{name} ({'/'.join(parts)})"


WRAPPERS = (
    "typer/",
    "click/",
    "bin/ledger",
    "adapters/cli.py",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "threading.py",
    "WorkerThread.run (",
)  # frames on every stack of their thread: left out of the inclusive list


@dataclass
class Spied:
    total: int
    packages: dict[str, int]
    self_counts: dict[str, int]
    inclusive: dict[str, int]


def read_pyspy(raw_path: Path) -> Spied:
    spied = Spied(0, defaultdict(int), defaultdict(int), defaultdict(int))
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        spied.total += count
        spied.self_counts[short(frames[-1])] += count
        spied.packages[package_of(frames[-1])] += count
        for frame in {short(f) for f in frames}:
            if not any(wrapper in frame for wrapper in WRAPPERS):
                spied.inclusive[frame] += count
    return spied


def summarize_pyspy(spied: Spied, label: str, top: int = 25) -> str:
    total = max(1, spied.total)
    out = io.StringIO()
    out.write(f"{label}: {spied.total} samples of the server holding the GIL\nself time by package:\n")
    for name, count in sorted(spied.packages.items(), key=lambda x: -x[1]):
        out.write(f"  {count / total * 100:5.1f}%  {name}\n")
    out.write("self time by function:\n")
    for name, count in sorted(spied.self_counts.items(), key=lambda x: -x[1])[:top]:
        out.write(f"  {count / total * 100:5.1f}%  {name}\n")
    out.write("inclusive time by function (event loop and thread entry frames left out):\n")
    for name, count in sorted(spied.inclusive.items(), key=lambda x: -x[1])[:top]:
        out.write(f"  {count / total * 100:5.1f}%  {name}\n")
    return out.getvalue()


def spy_on(
    kind: str, port: int, key: str, server_pid: int, schema: str, investors: list[str]
) -> tuple[Spied, dict[str, Any]] | None:
    """py-spy (GIL-holding samples) on the server while the client loads `kind`. Blocking mode:
    it slows the server down, but non-blocking sampling was seen to misattribute frames here."""
    raw_path = PROFILE_DIR / f"ledger_api_{kind}.pyspy.txt"
    raw_path.unlink(missing_ok=True)
    seconds = max(3, int(PROFILE_SECONDS))
    command = [
        str(PYSPY), "record", "--pid", str(server_pid), "--duration", str(seconds),
        "--rate", str(PYSPY_RATE), "--gil", "--full-filenames", "--format", "raw",
        "--output", str(raw_path),
    ]  # fmt: skip
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        spec = PhaseSpec(f"{kind}_profiled", kind, CONCURRENCY, seconds - 2.0, MAX_REQUESTS, 0.0)
        loaded = run_client(port, key, server_pid, schema, investors, [spec])[0]
    finally:
        _, error = spy.communicate(timeout=seconds + 30)
    if spy.returncode != 0 or not raw_path.exists():
        log(f"py-spy failed ({spy.returncode}): {error.decode()[-500:]}")
        return None
    return read_pyspy(raw_path), loaded


def pyspy_profile(port: int, key: str, server_pid: int, schema: str, investors: list[str]) -> dict[str, Any]:
    """Where the server's GIL time goes per request, portfolio against /healthz (all requests of
    each load: the server is idle before and after it, so it has no other GIL-holding samples)."""
    if not PYSPY.exists():
        log(f"py-spy not found at {PYSPY}: no server-side profile")
        return {}
    runs = {kind: spy_on(kind, port, key, server_pid, schema, investors) for kind in ("portfolio", "healthz")}
    folio, health = runs["portfolio"], runs["healthz"]
    if folio is None or health is None:
        return {}
    per_request: dict[str, dict[str, float]] = {}
    for kind, (spied, loaded) in (("portfolio", folio), ("healthz", health)):
        requests = max(1, loaded["completed_in_window"])
        per_request[kind] = {
            name: count / PYSPY_RATE * 1000 / requests for name, count in spied.packages.items()
        }
        per_request[kind]["total"] = spied.total / PYSPY_RATE * 1000 / requests
    names = sorted(per_request["portfolio"], key=lambda n: -per_request["portfolio"][n])
    table = io.StringIO()
    table.write("GIL-holding ms per request, by package of the running frame (portfolio | healthz):\n")
    for name in names:
        folio_ms, health_ms = per_request["portfolio"][name], per_request["healthz"].get(name, 0.0)
        table.write(f"  {name:20s} {folio_ms:7.3f} | {health_ms:7.3f}\n")
    summary = table.getvalue() + "\n" + summarize_pyspy(folio[0], "portfolio") + "\n"
    summary += summarize_pyspy(health[0], "healthz", top=12)
    text_path = PROFILE_DIR / "ledger_api_portfolio.pyspy.summary.txt"
    text_path.write_text(summary)
    log(
        f"py-spy of the server ({folio[1]['rps']:.0f} portfolio req/s, {health[1]['rps']:.0f} healthz req/s,"
        f" profiler on):\n{summary}"
    )
    return {"pyspy_summary": str(text_path), "gil_ms_per_request": per_request}


VARIANTS = ("sqlalchemy", "sqlalchemy_pool_10", "raw_psycopg")


def portfolio_handler() -> Callable[[Any, str], None]:
    """GET /v1/investors/{id}/portfolio (routers/investors.py) without FastAPI, on its worker-thread
    path (SQLAlchemy; SQLite, or an app without its event-loop read pool). On PostgreSQL the server
    awaits the same one statement through plain psycopg instead."""
    from fastapi.responses import JSONResponse

    from adapters.api.routers.investors import portfolio_body
    from projections.portfolio import portfolio_view

    def handler(engine: Any, investor_id: str) -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            view = portfolio_view(conn, investor_id)
        assert view.investor_known
        JSONResponse(portfolio_body(investor_id, view))

    return handler


def raw_connection(schema: str) -> psycopg.Connection[Any]:
    return psycopg.connect(PG_URL, autocommit=True, options=f"-csearch_path={schema}")


def raw_portfolio(conn: psycopg.Connection[Any]) -> Callable[[str], None]:
    """The handler's one statement through plain psycopg, autocommit (the floor of its database work)."""
    from projections.portfolio import _PORTFOLIO_RAW, LATEST

    def run(investor_id: str) -> None:
        psycopg.RawCursor(conn).execute(_PORTFOLIO_RAW, (investor_id, LATEST)).fetchall()

    return run


def round_trips(url: str, investor_id: str) -> dict[str, Any]:
    """What one portfolio read sends to PostgreSQL, from a libpq trace (statements prepared)."""
    from psycopg import pq
    from sqlalchemy import event

    from projections.schema import engine_for

    handler = portfolio_handler()
    engine = engine_for(url)
    with tempfile.NamedTemporaryFile("w+", prefix="bench_api_trace_") as trace:

        @event.listens_for(engine, "connect")
        def _trace(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.pgconn.trace(trace.fileno())
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        try:
            for _ in range(8):  # past psycopg's prepare threshold
                handler(engine, investor_id)
            trace.flush()
            offset = os.path.getsize(trace.name)
            handler(engine, investor_id)
            trace.flush()
        finally:
            engine.dispose()
        with open(trace.name, encoding="utf-8", errors="replace") as lines:
            lines.seek(offset)
            sent = [line.rstrip("\n").split("\t") for line in lines if line.startswith("F")]
    simple = [parts[3].strip().strip('"') for parts in sent if len(parts) > 3 and parts[2] == "Query"]
    extended = sum(1 for parts in sent if len(parts) > 2 and parts[2] == "Sync")
    return {"round_trips": len(simple) + extended, "simple_queries": simple, "extended_queries": extended}


def in_process_breakdown(schema: str, investors: list[str]) -> dict[str, Any]:
    """The handler's work without HTTP, one request at a time: its SQLAlchemy path on an engine like
    the server's, the same on a smaller pool, and the same statement through plain psycopg (the
    floor), interleaved request by request; then the SQLAlchemy path on 16 threads; then cProfile."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine, event

    from projections.schema import engine_for

    url = with_schema(PG_URL, schema)
    rng = random.Random(SEED + 3)
    chosen = [rng.choice(investors) for _ in range(IN_PROCESS_REQUESTS)]
    handler = portfolio_handler()
    result: dict[str, Any] = {"trace": round_trips(url, chosen[0])}
    server_like = engine_for(url)  # the server's engine settings
    base = url.split("?", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    small_pool = create_engine(
        base, connect_args={"options": f"-csearch_path={schema}"}, pool_size=10, max_overflow=20
    )
    raw_conn = raw_connection(schema)
    raw = raw_portfolio(raw_conn)

    actions: dict[str, Callable[[str], None]] = {
        "sqlalchemy": lambda i: handler(server_like, i),
        "sqlalchemy_pool_10": lambda i: handler(small_pool, i),
        "raw_psycopg": raw,
    }
    wall: dict[str, list[float]] = {k: [] for k in VARIANTS}
    cpu: dict[str, list[float]] = {k: [] for k in VARIANTS}
    try:
        for investor_id in chosen[:50]:
            for action in actions.values():
                action(investor_id)
        for investor_id in chosen:
            for variant, action in actions.items():
                started, cpu_started = time.perf_counter(), time.thread_time()
                action(investor_id)
                cpu[variant].append((time.thread_time() - cpu_started) * 1000)
                wall[variant].append((time.perf_counter() - started) * 1000)
        profile = cProfile.Profile()
        profile.enable()
        for investor_id in chosen[:200]:
            handler(server_like, investor_id)
        profile.disable()
    finally:
        server_like.dispose()
        small_pool.dispose()
        raw_conn.close()
    result["wall_ms"] = wall
    result["cpu_ms"] = {k: statistics.fmean(x) for k, x in cpu.items()}

    concurrent = engine_for(url)
    connects = [0]

    @event.listens_for(concurrent, "connect")
    def _count(*_: Any) -> None:
        connects[0] += 1

    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda i: handler(concurrent, i), chosen[:100]))
            before = connects[0]
            work = chosen * 2
            started, cpu_started = time.perf_counter(), time.process_time()
            list(pool.map(lambda i: handler(concurrent, i), work))
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        concurrent.dispose()
    result["threads_rps"] = len(work) / seconds
    result["threads_cpu_ms_per_request"] = cpu_seconds / len(work) * 1000
    result["threads_connects_per_1000"] = (connects[0] - before) / len(work) * 1000

    out = io.StringIO()
    out.write("200 portfolio handler bodies in-process (SQLAlchemy path, server's engine), cProfile on\n")
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    path = PROFILE_DIR / "ledger_api_portfolio_in_process.txt"
    path.write_text(out.getvalue())
    result["cprofile"] = str(path)
    trace = result["trace"]
    log(
        "portfolio handler in-process (no HTTP, one at a time, interleaved), p50 wall / mean CPU ms: "
        + ", ".join(f"{k} {statistics.median(wall[k]):.2f} / {result['cpu_ms'][k]:.2f}" for k in VARIANTS)
        + f"; round trips per request (SQLAlchemy path): {trace['round_trips']} ({trace['extended_queries']}"
        f" prepared statements + {' | '.join(trace['simple_queries'])});"
        f" on {CONCURRENCY} threads: {result['threads_rps']:.0f} req/s,"
        f" {result['threads_cpu_ms_per_request']:.2f} CPU ms/request,"
        f" {result['threads_connects_per_1000']:.1f} new pool connections per 1000 requests;"
        f" cProfile in {path}"
    )
    return result


# ----- main -----


def phases() -> list[PhaseSpec]:
    concurrent: list[PhaseSpec] = []
    for number in range(1, ROUNDS + 1):
        for kind in ("healthz", "portfolio"):
            concurrent.append(
                PhaseSpec(
                    f"{kind}_c{CONCURRENCY}_r{number}", kind, CONCURRENCY, SECONDS, MAX_REQUESTS, WARMUP
                )
            )
    return [
        *concurrent,
        PhaseSpec("single_connection", "single", 1, SINGLE_SECONDS, SINGLE_REQUESTS, WARMUP),
    ]


def main() -> None:
    overall = time.perf_counter()
    log(
        f"{EVENTS} events, {INVESTORS} investors, {CONCURRENCY} connections,"
        f" {ROUNDS} rounds of {SECONDS:.0f}s,"
        f" load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cpus"
    )
    profile: dict[str, Any] = {}
    with scratch_schema(log, prefix="bench_api_", digits=10, keep=KEEP_SCHEMA) as schema:
        prepared = generate(schema)
        gc.collect()
        key, catch_up_seconds = project(schema, prepared.head)
        with server(schema) as (process, port):
            checked = check_portfolios(port, key, prepared)
            results = run_client(port, key, process.pid, schema, prepared.sample, phases())
            by_name = {r["name"]: r for r in results}
            healthz = pool([r for r in results if r["kind"] == "healthz" and r["concurrency"] == CONCURRENCY])
            folio = pool([r for r in results if r["kind"] == "portfolio" and r["concurrency"] == CONCURRENCY])
            single_phase = by_name["single_connection"]
            single = {k: Latency(x) for k, x in single_phase["samples"].items()}
            ratio = folio.rps / healthz.rps
            missed = single["http_portfolio"].p99 > TARGET_P99_MS or ratio < TARGET_THROUGHPUT
            if missed or FORCE_PROFILE:
                why = "a target is missed" if missed else "BENCH_PROFILE=1"
                log(f"{why}: profiling the server under portfolio load")
                profile = pyspy_profile(port, key, process.pid, schema, prepared.sample)
        breakdown = in_process_breakdown(schema, prepared.sample)
    errors = healthz.errors + folio.errors + single_phase["errors"]
    common = {
        "events": prepared.events,
        "head_position": prepared.head,
        "investors": INVESTORS,
        "sampled_investors": len(prepared.sample),
        "assets_held_per_sampled_investor": round(prepared.holdings_per_sampled, 2),
        "portfolios_checked": checked,
        "store": "postgresql",
        "server": "ledger serve --no-projector (uvicorn, 1 worker, h11, asyncio)",
        "errors": errors,
        "generate_seconds": round(prepared.generate_seconds, 1),
        "catch_up_seconds": round(catch_up_seconds, 1),
    }
    wall, cpu = breakdown["wall_ms"], breakdown["cpu_ms"]
    cpu_folio = folio.per_request("server_cpu_ms_per_request")
    cpu_health = healthz.per_request("server_cpu_ms_per_request")
    http_folio, http_health = single["http_portfolio"], single["http_healthz"]
    in_process_folio, raw_folio = single["in_process_sqlalchemy"], single["in_process_raw_psycopg"]
    emit(
        {
            "name": "api_portfolio_p99",
            "value": round(http_folio.p99, 3),
            "unit": "ms",
            "baseline": round(http_health.p99, 3),
            "baseline_unit": "ms",
            "baseline_name": "GET /healthz p99, single connection, same server, interleaved",
            "ratio": round(http_folio.p99 / http_health.p99, 3),
            "target": f"<= {TARGET_P99_MS:.0f}",
            "pass": http_folio.p99 <= TARGET_P99_MS and errors == 0,
            "concurrency": 1,
            "p50_ms": round(http_folio.p50, 3),
            "max_ms": round(http_folio.max, 3),
            "samples": http_folio.count,
            "baseline_p50_ms": round(http_health.p50, 3),
            "in_process_p50_ms": round(in_process_folio.p50, 3),
            "in_process_p99_ms": round(in_process_folio.p99, 3),
            "raw_psycopg_p50_ms": round(raw_folio.p50, 3),
            "raw_psycopg_p99_ms": round(raw_folio.p99, 3),
            "in_process_note": "the handler's work without HTTP in the client process, interleaved with the"
            " HTTP requests: the handler's SQLAlchemy (worker-thread) path, and its one statement via plain"
            " psycopg (what the server awaits on PostgreSQL)",
            "round_trips_per_request": breakdown["trace"]["round_trips"],
            "machine_busy_cores": round(single_phase["machine_busy_cores"], 2),
            "load_average_1m": round(single_phase["load_average_1m"], 2),
            **common,
        }
    )
    emit(
        {
            "name": "api_portfolio_throughput",
            "value": round(folio.rps, 1),
            "unit": "req/s",
            "baseline": round(healthz.rps, 1),
            "baseline_unit": "req/s",
            "baseline_name": f"GET /healthz, {CONCURRENCY} connections, same server",
            "ratio": round(ratio, 4),
            "target": f">= {TARGET_THROUGHPUT}",
            "pass": ratio >= TARGET_THROUGHPUT and errors == 0,
            "concurrency": CONCURRENCY,
            "rounds": ROUNDS,
            "seconds_per_round": SECONDS,
            "samples": folio.requests,
            "baseline_samples": healthz.requests,
            "rounds_rps": [round(p["rps"], 1) for p in folio.phases],
            "baseline_rounds_rps": [round(p["rps"], 1) for p in healthz.phases],
            "p50_ms": round(folio.p50, 3),
            "p99_ms": round(folio.p99, 3),
            "baseline_p50_ms": round(healthz.p50, 3),
            "baseline_p99_ms": round(healthz.p99, 3),
            "server_cpu_ms_per_request": _round(cpu_folio),
            "baseline_server_cpu_ms_per_request": _round(cpu_health),
            "cpu_cost_ratio": _round(cpu_health / cpu_folio if cpu_folio and cpu_health else None),
            "postgres_cpu_ms_per_request": _round(folio.per_request("postgres_cpu_ms_per_request")),
            "client_cpu_ms_per_request": _round(folio.per_request("client_cpu_ms_per_request")),
            "baseline_client_cpu_ms_per_request": _round(healthz.per_request("client_cpu_ms_per_request")),
            "server_cpu_cores": _round(folio.mean("server_cpu_cores")),
            "baseline_server_cpu_cores": _round(healthz.mean("server_cpu_cores")),
            "postgres_cpu_cores": _round(folio.mean("postgres_cpu_cores")),
            "server_mean_ms": _round(folio.mean("server_mean_ms")),
            "baseline_server_mean_ms": _round(healthz.mean("server_mean_ms")),
            "server_backends_new": sum(p["server_backends_new"] for p in folio.phases),
            "in_process_cpu_ms_per_request": {k: round(x, 3) for k, x in cpu.items()},
            "in_process_p50_ms": {k: round(statistics.median(x), 3) for k, x in wall.items()},
            "in_process_threads_rps": round(breakdown["threads_rps"], 1),
            "in_process_threads_cpu_ms_per_request": round(breakdown["threads_cpu_ms_per_request"], 3),
            "in_process_threads_connects_per_1000": round(breakdown["threads_connects_per_1000"], 2),
            "others_cpu_cores": _round(folio.mean("others_cpu_cores")),
            "baseline_others_cpu_cores": _round(healthz.mean("others_cpu_cores")),
            "machine_steal_cores": _round(folio.mean("machine_steal_cores")),
            "load_average_1m": round(folio.mean("load_average_1m") or 0.0, 2),
            "baseline_load_average_1m": round(healthz.mean("load_average_1m") or 0.0, 2),
            "profile": profile.get("pyspy_summary"),
            "profile_gil_ms_per_request": {
                kind: {name: round(x, 3) for name, x in values.items()}
                for kind, values in profile.get("gil_ms_per_request", {}).items()
            },
            **common,
        }
    )
    emit(
        {
            "name": "api_portfolio_p99_concurrent",
            "value": round(folio.p99, 3),
            "unit": "ms",
            "baseline": round(healthz.p99, 3),
            "baseline_unit": "ms",
            "baseline_name": f"GET /healthz p99, {CONCURRENCY} connections, same server",
            "ratio": round(folio.p99 / healthz.p99, 3),
            "target": None,
            "pass": None,
            "concurrency": CONCURRENCY,
            "p50_ms": round(folio.p50, 3),
            "samples": folio.requests,
            "server_share_le_10ms": _round(folio.mean("server_share_le_10ms")),
        }
    )
    log(f"done in {time.perf_counter() - overall:.1f}s")
    if errors:
        first = next(p["first_error"] for p in results if p["first_error"])
        msg = f"{errors} requests failed; first: {first}"
        raise SystemExit(msg)


# ----- analytics (SPEC 8: a portfolio of 20 positions and 2,000 dated flows; a 365-point history) -----

ANALYTICS_REQUESTS = int(os.environ.get("BENCH_ANALYTICS_REQUESTS", "400"))  # of each endpoint
TARGET_ANALYTICS_P99_MS = 15.0
TARGET_HISTORY_P99_MS = 50.0
ANALYTICS_INVESTOR = "bench-main"


class SimulatedClock:
    """Three years of history in seconds: every command moves the clock on by eight hours."""

    def __init__(self) -> None:
        self.now = datetime(2023, 1, 2, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def analytics_history(url: str) -> int:
    """Through the application's commands: 20 assets; one investor with 100 dated flow rows in each
    (45 investments, 20 transfers out, 10 in, 10 dividends declared and paid, 5 redemptions),
    interleaved with valuations, over three years (event time follows the simulated clock).
    Returns the head position."""
    import eventsourcing.domain

    clock = SimulatedClock()
    eventsourcing.domain.datetime_now_with_tzinfo = clock  # type: ignore[assignment]
    app = LedgerApplication(store_env(url), clock=clock)
    main, other = ANALYTICS_INVESTOR, "bench-other"
    rng = random.Random(SEED + 7)
    try:
        for investor_id in (main, other):
            app.register_investor(
                investor_id, "ID", "0x" + investor_id.encode().hex()[:40].ljust(40, "0"), False
            )
            app.update_kyc(investor_id, "approved")
        assets = [f"A{n:02d}-BENCH" for n in range(20)]
        for asset_id in assets:
            terms = {"asset_id": asset_id, "name": asset_id, "symbol": asset_id[:3], "decimals": 0}
            terms |= {"currency": "IDR", "unit_price": 100_000, "authorized_supply": 10**9}
            app.register_asset(terms | {"min_investment": 1, "max_investment": 10**12})
            app.approve_asset(asset_id)
            app.set_offering(asset_id, True)
        plans = {}
        for asset_id in assets:
            steps = ["invest"] * 40 + ["out"] * 20 + ["in"] * 10 + ["dividend"] * 10 + ["redeem"] * 5
            rng.shuffle(steps)
            plans[asset_id] = ["other", "invest", "invest", "invest", "invest", "invest", *steps]

        def settle(investor_id: str, asset_id: str, tokens: int) -> None:
            placed = app.place_investment(investor_id, asset_id, tokens * 100_000)
            app.confirm_payment(placed.result["investment_id"], "bench")

        for step in range(len(plans[assets[0]])):
            for asset_id in assets:
                clock.now += timedelta(hours=8)
                kind = plans[asset_id][step]
                if kind == "other":
                    settle(other, asset_id, 100)
                elif kind == "invest":
                    settle(main, asset_id, rng.randint(5, 20))
                elif kind in ("out", "in"):
                    sender, receiver = (main, other) if kind == "out" else (other, main)
                    app.transfer(asset_id, sender, receiver, 1)
                elif kind == "redeem":
                    app.redeem(asset_id, main, 1)
                else:
                    declared = app.declare_distribution(asset_id, rng.randint(10_000, 200_000))
                    app.pay_distribution(declared.result["distribution_id"])
                if step % 15 == 7:
                    app.record_valuation(asset_id, rng.randint(80_000, 130_000), clock.now, "bench NAV")
        return app.admin.head_position()
    finally:
        app.close()


def analytics_main() -> None:
    """Only the analytics measures: p99 of the analytic portfolio and of a 365-point history,
    each against GET /healthz p99, interleaved on one persistent connection to the same server."""
    with scratch_schema(log, prefix="bench_analytics_", digits=10, keep=KEEP_SCHEMA) as schema:
        started = time.perf_counter()
        head = analytics_history(with_schema(PG_URL, schema))
        log(f"history: {head} events in {time.perf_counter() - started:.1f}s")
        key, _ = project(schema, head)
        with psycopg.connect(PG_URL, options=f"-csearch_path={schema}") as conn:
            flows, first, last = conn.execute(
                "SELECT COUNT(*), MIN(day), MAX(day) FROM rm_investor_flows WHERE investor_id = %s",
                (ANALYTICS_INVESTOR,),
            ).fetchone() or (0, 0, 0)
        start, end = (datetime.fromordinal(d).date().isoformat() for d in (first, last))
        base = f"/v1/investors/{ANALYTICS_INVESTOR}/portfolio"
        paths = {
            "healthz": HEALTH_ROUTE,
            "portfolio": base,
            "history": f"{base}/history?from={start}&to={end}&points=365",
        }
        samples: dict[str, list[float]] = {name: [] for name in paths}
        with server(schema) as (_, port):
            conn_http = http.client.HTTPConnection(HOST, port, timeout=10)
            headers = {"Authorization": f"Bearer {key}"}
            bodies = {}
            for round_ in range(ANALYTICS_REQUESTS + 20):  # the first 20 rounds warm up
                for name in random.Random(round_).sample(sorted(paths), len(paths)):
                    began = time.perf_counter_ns()
                    conn_http.request("GET", paths[name], headers=headers)
                    response = conn_http.getresponse()
                    body = response.read()
                    elapsed = (time.perf_counter_ns() - began) / 1e6
                    assert response.status == 200, (name, response.status, body[:300])
                    if round_ >= 20:
                        samples[name].append(elapsed)
                    bodies[name] = body
            conn_http.close()
        folio, history = json.loads(bodies["portfolio"]), json.loads(bodies["history"])
        assert len(folio["positions"]) == 20 and folio["totals"]["xirr_bps"] is not None, folio["totals"]
        assert len(history["points"]) == 365, len(history["points"])
    p99 = {name: percentile(values, 99) for name, values in samples.items()}
    shared = {"flows": flows, "positions": len(folio["positions"]), "samples": ANALYTICS_REQUESTS}
    shared |= {"baseline_name": "GET /healthz p99, same server, one connection, interleaved"}
    shared |= {"store": "postgresql", "events": head}
    for name, target, extra in (
        ("api_analytics_portfolio_p99", TARGET_ANALYTICS_P99_MS, {"xirr_bps": folio["totals"]["xirr_bps"]}),
        ("api_analytics_history_p99", TARGET_HISTORY_P99_MS, {"points": len(history["points"])}),
    ):
        kind = "portfolio" if "portfolio" in name else "history"
        emit(
            {
                "name": name,
                "value": round(p99[kind], 3),
                "unit": "ms",
                "baseline": round(p99["healthz"], 3),
                "ratio": round(p99[kind] / p99["healthz"], 3),
                "target": f"<= {target:.0f}",
                "pass": p99[kind] <= target,
                "p50_ms": round(statistics.median(samples[kind]), 3),
                **extra,
                **shared,
            }
        )


# ----- lists (SPEC 8: a statement of 10,000 movements, first and last page; 10,000 investors) -----

LISTS_INVESTORS = int(os.environ.get("BENCH_LISTS_INVESTORS", "10000"))
LISTS_MOVEMENTS = int(os.environ.get("BENCH_LISTS_MOVEMENTS", "10000"))
LISTS_REQUESTS = int(os.environ.get("BENCH_LISTS_REQUESTS", "300"))  # of each statement page
LISTS_WALKS = int(os.environ.get("BENCH_LISTS_WALKS", "15"))  # walks through the investor list
LISTS_PAGE = 500  # investors per page (the largest page)
TARGET_LISTS_P99_MS = 20.0
TARGET_LISTS_RATE = 0.5


def lists_history(url: str) -> tuple[int, str]:
    """Aggregates driven in memory (as `History`): one asset, `LISTS_INVESTORS` investors with KYC
    approved, the first of them issued tokens once and then sending one token to each of the others
    in turn, `LISTS_MOVEMENTS` movements in all. Returns the head and the investor's id."""
    app = LedgerApplication(store_env(url))
    try:
        history = History(app, 0, LISTS_INVESTORS)
        plan = asset_plans()[0]
        history.register_asset(plan)
        asset = history.assets[plan.terms["asset_id"]]
        investors = [history.register_investor(n) for n in range(1, LISTS_INVESTORS + 1)]
        for investor in investors:
            investor.update_kyc("approved", None)
            history.commit("update_kyc", investor)
        main = investors[0].investor_id
        purchase = asset.check_investment(main, True, LISTS_MOVEMENTS * asset.unit_price)
        investment = Investment.place(main, asset.asset_id, LISTS_MOVEMENTS * asset.unit_price, purchase)
        asset.reserve(investment.id, main, purchase.quantity)
        history.commit("place_investment", asset, investment)
        investment.confirm_payment("PAY-LISTS")
        asset.issue(investment.id, main, purchase.quantity, history.now)
        history.commit("confirm_payment", investment, asset)
        for n in range(1, LISTS_MOVEMENTS):
            receiver = investors[1 + (n - 1) % (len(investors) - 1)].investor_id
            asset.transfer(main, receiver, 1, True, history.now)
            history.commit("transfer", asset)
        history.flush()
        return history.head, main
    finally:
        app.close()


def lists_main(explain: bool) -> None:
    """Statement pages (first and last) p99 against GET /healthz, interleaved on one connection;
    the investor list walked page by page against the same rows read by one raw SELECT."""
    with scratch_schema(log, prefix="bench_lists_", digits=10, keep=KEEP_SCHEMA) as schema:
        started = time.perf_counter()
        head, main = lists_history(with_schema(PG_URL, schema))
        log(f"history: {head} events in {time.perf_counter() - started:.1f}s")
        key, _ = project(schema, head)
        headers = {"Authorization": f"Bearer {key}"}
        statement = f"/v1/investors/{main}/transactions"
        with server(schema) as (_, port):
            conn_http = http.client.HTTPConnection(HOST, port, timeout=30)

            def get_body(path: str) -> bytes:
                conn_http.request("GET", path, headers=headers)
                response = conn_http.getresponse()
                body = response.read()
                assert response.status == 200, (path, response.status, body[:300])
                return body

            def get(path: str) -> Any:
                return json.loads(get_body(path))

            movements, cursor, last_path = 0, None, statement
            while True:  # the whole statement, page by page, to find the last page's cursor
                page = get(statement + (f"?cursor={cursor}" if cursor else ""))
                movements += len(page["items"])
                if page["next_cursor"] is None:
                    break
                cursor = page["next_cursor"]
                last_path = f"{statement}?cursor={cursor}"
            assert movements == LISTS_MOVEMENTS, movements
            assert page["items"][-1]["balance_after"] == "1", page["items"][-1]
            paths = {"healthz": HEALTH_ROUTE, "first": statement, "last": last_path}
            samples: dict[str, list[float]] = {name: [] for name in paths}
            for round_ in range(LISTS_REQUESTS + 20):  # the first 20 rounds warm up
                for name in random.Random(round_).sample(sorted(paths), len(paths)):
                    began = time.perf_counter_ns()
                    get(paths[name])
                    if round_ >= 20:
                        samples[name].append((time.perf_counter_ns() - began) / 1e6)

            def walk() -> int:
                rows, cursor = 0, None
                while True:
                    query = f"?limit={LISTS_PAGE}" + (f"&cursor={cursor}" if cursor else "")
                    page = get("/v1/investors" + query)
                    rows += len(page["items"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        return rows

            raw = psycopg.connect(PG_URL, options=f"-csearch_path={schema}")
            columns = "investor_id, country, accredited, kyc_status, kyc_expires_at, registered_at"
            select_all = f"SELECT {columns}, registered_position FROM rm_investors ORDER BY investor_id"

            def raw_select() -> int:
                return len(raw.execute(select_all).fetchall())

            def raw_pages() -> int:  # the API's pages, by key, straight from the database
                rows, last = 0, ""
                while True:
                    query = f"SELECT {columns}, registered_position FROM rm_investors WHERE investor_id > %s"
                    page = raw.execute(f"{query} ORDER BY investor_id LIMIT {LISTS_PAGE}", (last,)).fetchall()
                    rows += len(page)
                    if len(page) < LISTS_PAGE:
                        return rows
                    last = page[-1][0]

            walks: list[float] = []
            selects: list[float] = []
            paged: list[float] = []
            for _ in range(LISTS_WALKS + 2):  # interleaved; the first two of each warm up
                for measure, into in ((walk, walks), (raw_select, selects), (raw_pages, paged)):
                    began = time.perf_counter()
                    assert measure() == LISTS_INVESTORS
                    into.append(time.perf_counter() - began)
            floor = lists_floor(port, get_body, raw_pages, statistics.median(selects[2:])) if explain else {}
            raw.close()
            conn_http.close()
    p99 = {name: percentile(values, 99) for name, values in samples.items()}
    shared = {"store": "postgresql", "events": head, "movements": movements, "samples": LISTS_REQUESTS}
    shared |= {"page_items": 100}
    shared |= {"baseline_name": "GET /healthz p99, same server, one connection, interleaved"}
    for kind in ("first", "last"):
        emit(
            {
                "name": f"api_statement_{kind}_page_p99",
                "value": round(p99[kind], 3),
                "unit": "ms",
                "baseline": round(p99["healthz"], 3),
                "ratio": round(p99[kind] / p99["healthz"], 3),
                "target": f"<= {TARGET_LISTS_P99_MS:.0f}",
                "pass": p99[kind] <= TARGET_LISTS_P99_MS,
                "p50_ms": round(statistics.median(samples[kind]), 3),
                **shared,
            }
        )
    rows = LISTS_INVESTORS
    rate, baseline = rows / statistics.median(walks[2:]), rows / statistics.median(selects[2:])
    emit(
        {
            "name": "api_investor_list_rate",
            "value": round(rate),
            "unit": "rows/s",
            "baseline": round(baseline),
            "ratio": round(rate / baseline, 3),
            "target": f">= {TARGET_LISTS_RATE}",
            "pass": rate / baseline >= TARGET_LISTS_RATE,
            "rows": rows,
            "page_items": LISTS_PAGE,
            "walks": LISTS_WALKS,
            "baseline_name": "one raw SELECT of the same rows and columns (psycopg, fetchall), interleaved",
            "raw_pages_rows_per_s": round(rows / statistics.median(paged[2:])),
            "client": "http.client, one keep-alive connection, each page's body parsed by json.loads",
            "store": "postgresql",
            **({"explain": floor} if floor else {}),
        }
    )


def lists_floor(
    port: int, get_body: Callable[[str], bytes], raw_pages: Callable[[], int], select_s: float
) -> dict[str, Any]:
    """Where a walk through the investor list goes (`--explain`), in ms per walk (medians): the
    pages fetched without parsing them and the server's own time for them (its latency histogram),
    the client's `json.loads` of them, the same pages read straight from the database, and as many
    round trips of `limit=1` (the fixed cost of an authenticated read) and of `/healthz` (HTTP and
    the app's least) as there are pages. `floor_ms` is what a walk would take if the server added
    nothing to the rows but a `/healthz` round trip: database pages + parsing + those round trips;
    `floor_ratio` is the raw SELECT's time over it, the best ratio this stack could show."""
    paths, bodies, cursor = [], [], None
    while True:
        paths.append(f"/v1/investors?limit={LISTS_PAGE}" + (f"&cursor={cursor}" if cursor else ""))
        bodies.append(get_body(paths[-1]))
        cursor = json.loads(bodies[-1])["next_cursor"]
        if cursor is None:
            break
    pages = len(paths)

    def timed(action: Callable[[], object]) -> float:
        began = time.perf_counter()
        action()
        return (time.perf_counter() - began) * 1000

    fetch = [timed(lambda: [get_body(path) for path in paths]) for _ in range(LISTS_WALKS + 2)][2:]
    before = asyncio.run(scrape(port))
    fetch += [timed(lambda: [get_body(path) for path in paths]) for _ in range(LISTS_WALKS)]
    after = asyncio.run(scrape(port))
    served = after[("/v1/investors", "count")] - before[("/v1/investors", "count")]
    server = (after[("/v1/investors", "sum")] - before[("/v1/investors", "sum")]) / served * pages * 1000
    parts: dict[str, list[float]] = {"parse_ms": [], "db_pages_ms": [], "limit_1_ms": [], "healthz_ms": []}
    for _ in range(LISTS_WALKS + 2):  # interleaved; the first two warm up
        parts["parse_ms"].append(timed(lambda: [json.loads(body) for body in bodies]))
        parts["db_pages_ms"].append(timed(raw_pages))
        parts["limit_1_ms"].append(timed(lambda: [get_body("/v1/investors?limit=1") for _ in paths]))
        parts["healthz_ms"].append(timed(lambda: [get_body(HEALTH_ROUTE) for _ in paths]))
    found = {name: statistics.median(values[2:]) for name, values in parts.items()}
    floor = found["db_pages_ms"] + found["parse_ms"] + found["healthz_ms"]
    return {
        "pages": pages,
        "page_bytes": round(statistics.fmean(len(body) for body in bodies)),
        "fetch_ms": round(statistics.median(fetch), 2),
        "server_ms": round(server, 2),
        **{name: round(value, 2) for name, value in found.items()},
        "raw_select_ms": round(select_s * 1000, 2),
        "floor_ms": round(floor, 2),
        "floor_ratio": round(select_s * 1000 / floor, 3),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        client_main(sys.argv[2], sys.argv[3])
    elif sys.argv[1:] == ["--analytics"]:
        analytics_main()
    elif sys.argv[1:] in (["--lists"], ["--lists", "--explain"]):
        lists_main(explain="--explain" in sys.argv)
    else:
        main()
