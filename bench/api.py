"""API benchmark (SPEC section 8, "api"): portfolio GETs from the real server, against a
trivial endpoint (`/healthz`) of the same server with the same settings.

Run from the repository root: `.venv/bin/python bench/api.py [--analytics | --lists] [--explain]`.

One fresh PostgreSQL schema (dropped at the end; kept with `BENCH_KEEP_SCHEMA=1`) gets a
history of `BENCH_EVENTS` events (default 100,000: four assets, `BENCH_INVESTORS` investors
with KYC investing in one to four of them, then transfers, token freezes and distributions),
made by driving the aggregates' command methods in memory (`common.EventBatches`). The read
models are caught up and analysed, then `ledger serve --no-projector` (uvicorn, one worker, as
deployed) serves it; `BENCH_CHECKED` portfolios over HTTP must equal those computed from the
generator's aggregates. The load comes from a client process of its own: an asyncio HTTP/1.1
client with keep-alive connections and prebuilt requests (cheap per request, so that it does not
throttle the trivial endpoint and flatter the ratio). Portfolio requests pick among
`BENCH_SAMPLE` investors holding two or more assets. Measures and targets:

- `api_portfolio_p99`: portfolio p99 over one connection, one request at a time, interleaved
  with `/healthz` (its p99 the baseline). Target <= 10 ms.
- `api_portfolio_throughput`: portfolio requests/s at `BENCH_CONCURRENCY` (16) connections,
  `BENCH_ROUNDS` rounds of `BENCH_SECONDS` s alternating with `/healthz` the same way. Target
  >= 0.5 x `/healthz`.
- `api_portfolio_p99_concurrent`: the portfolio p99 at that concurrency (no target).

With `--analytics`: `api_analytics_portfolio_p99` (a portfolio of 20 positions and 2,000 dated
flows, target <= 15 ms) and `api_analytics_history_p99` (its 365-point history, target <= 50
ms), each against `/healthz` p99, interleaved on one connection.

With `--lists`: one asset and `BENCH_LISTS_INVESTORS` investors, the first with
`BENCH_LISTS_MOVEMENTS` movements; `api_statement_first_page_p99` and
`api_statement_last_page_p99` (100 movements a page, target <= 20 ms, against `/healthz` p99,
interleaved) and `api_investor_list_rate` (every investor paged through 500 at a time, rows/s,
target >= 0.5 x one raw SELECT of the same rows and columns, interleaved).

`--explain` adds p50s, sample counts, rounds and the history's size to each line; with `--lists`,
also where a walk through the investor list goes and the floor of a walk on this stack.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.domain import Aggregate

from common import (
    HOST,
    PG_URL,
    ROOT,
    EventBatches,
    analyze,
    arguments,
    logger,
    measure,
    offered_amount,
    percentile,
    place_investment,
    random_investor,
    scratch_schema,
    served,
    with_schema,
)
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.asset import Asset
from ledger.domain.distribution import Distribution
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor
from ledger.domain.terms import AssetTerms

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
INVESTORS = int(os.environ.get("BENCH_INVESTORS", "5000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))  # per concurrent phase
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "50000"))  # per concurrent phase
WARMUP = float(os.environ.get("BENCH_WARMUP", "1"))
SINGLE_SECONDS = float(os.environ.get("BENCH_SINGLE_SECONDS", "12"))
SINGLE_REQUESTS = int(os.environ.get("BENCH_SINGLE_REQUESTS", "2000"))  # of each variant
SAMPLE = int(os.environ.get("BENCH_SAMPLE", "1000"))
CHECKED = int(os.environ.get("BENCH_CHECKED", "200"))
SEED = int(os.environ.get("BENCH_SEED", "20261122"))
VALIDATE_EVERY = 25
PHASE_TIMEOUT_SLACK = 60.0

TARGET_P99_MS = 10.0  # portfolio GET p99 <= 10 ms
TARGET_THROUGHPUT = 0.5  # portfolio requests/s >= 0.5 x /healthz requests/s

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


class History(EventBatches):
    """Drives the aggregates' command methods like the application does, one command at a time."""

    def __init__(self, app: LedgerApplication, target: int, investors: int) -> None:
        super().__init__(app)
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

    # ----- commands -----

    def register_asset(self, plan: AssetPlan) -> None:
        asset = Asset.register(AssetTerms.parse(plan.terms))
        self.assets[asset.asset_id] = asset
        self.commit("register_asset", asset)
        asset.approve()
        self.commit("approve_asset", asset)
        asset.set_offering(True)
        self.commit("set_offering", asset)

    def register_investor(self, number: int) -> Investor:
        claim, investor = random_investor(self.rng, number, accredited_share=0.3)
        self.investors[investor.investor_id] = investor
        self.commit("register_investor", claim, investor)
        return investor

    def place(self, asset: Asset, investor_id: str, quantity: int) -> bool:
        investor = self.investors[investor_id]
        amount = offered_amount(asset, quantity, self.rng)

        def command() -> tuple[Aggregate, ...]:
            eligible = investor.eligible_for(asset, self.now)
            investment, purchase = place_investment(asset, investor_id, eligible, amount)
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
    log(f"ANALYZE of {analyze(schema)} tables; admin key created")
    return key, seconds


# ----- the server -----


def server(schema: str) -> Any:
    """`ledger serve --no-projector` on the schema's store and read models."""
    return served(log, with_schema(PG_URL, schema), "--no-projector")


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
    kind: str  # "healthz", "portfolio" or "single" (both, one request at a time)
    concurrency: int
    seconds: float
    max_requests: int
    warmup: float


@dataclass
class PhaseStats:
    latencies_ms: list[float] = field(default_factory=list)
    issued: int = 0
    errors: int = 0
    first_error: str | None = None
    window_seconds: float = 0.0


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


def requests_of(kind: str, port: int, key: str, investors: list[str]) -> list[bytes]:
    if kind == "healthz":
        return [f"GET {HEALTH_ROUTE} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()]
    return [
        (
            f"GET /v1/investors/{i}/portfolio HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {key}\r\n\r\n"
        ).encode()
        for i in investors
    ]


async def run_phase(spec: PhaseSpec, port: int, key: str, investors: list[str], seed: int) -> PhaseStats:
    """`spec.concurrency` connections, each sending its next request as the last one is answered;
    every 25th portfolio is parsed and checked."""
    requests = requests_of(spec.kind, port, key, investors)
    stats = PhaseStats()
    connections = [await asyncio.open_connection(HOST, port) for _ in range(spec.concurrency)]
    measure_from = time.perf_counter() + spec.warmup
    deadline = measure_from + spec.seconds
    ended = measure_from

    async def worker(number: int) -> None:
        nonlocal ended
        reader, writer = connections[number]
        rng = random.Random(seed * 1000 + number)
        count = 0
        while time.perf_counter() < deadline and stats.issued < spec.max_requests:
            index = rng.randrange(len(requests))
            started = time.perf_counter()
            measured = started >= measure_from
            if measured:
                stats.issued += 1
            writer.write(requests[index])
            status, body = await read_response(reader)
            if status != 200:
                stats.errors += 1
                stats.first_error = stats.first_error or f"{status} {body[:300]!r}"
            if measured:
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            count += 1
            if spec.kind == "portfolio" and count % VALIDATE_EVERY == 0 and status == 200:
                payload = json.loads(body)
                assert payload["investor_id"] == investors[index], payload
                assert len(payload["positions"]) >= 2, payload
        ended = max(ended, time.perf_counter())
        writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(n) for n in range(spec.concurrency))),
        timeout=spec.warmup + spec.seconds + PHASE_TIMEOUT_SLACK,
    )
    assert stats.latencies_ms, "no request was measured"
    stats.window_seconds = ended - measure_from
    return stats


async def run_single(spec: PhaseSpec, port: int, key: str, investors: list[str], seed: int) -> dict[str, Any]:
    """One request at a time, the portfolio and /healthz (each on its own keep-alive connection)
    in a shuffled order in every iteration, so that both see the same moments of the machine."""
    requests = {kind: requests_of(kind, port, key, investors) for kind in ("portfolio", "healthz")}
    connections = {kind: await asyncio.open_connection(HOST, port) for kind in requests}
    samples: dict[str, list[float]] = {kind: [] for kind in requests}
    errors: list[str] = []
    rng = random.Random(seed)
    measure_from = time.perf_counter() + spec.warmup
    deadline = measure_from + spec.seconds
    try:
        while time.perf_counter() < deadline and len(samples["portfolio"]) < spec.max_requests:
            index = rng.randrange(len(investors))
            measured = time.perf_counter() >= measure_from
            for kind in rng.sample(sorted(requests), 2):
                reader, writer = connections[kind]
                started = time.perf_counter()
                writer.write(requests[kind][index % len(requests[kind])])
                status, body = await read_response(reader)
                if measured:
                    samples[kind].append((time.perf_counter() - started) * 1000)
                if status != 200:
                    errors.append(f"{status} {body[:300]!r}")
    finally:
        for _, writer in connections.values():
            writer.close()
    return {"samples": samples, "errors": len(errors), "first_error": errors[0] if errors else None}


async def client_phases(args: dict[str, Any]) -> list[dict[str, Any]]:
    port, key, investors = args["port"], args["key"], args["investors"]
    results = []
    for number, raw in enumerate(args["phases"]):
        spec = PhaseSpec(**raw)
        if spec.kind == "single":
            results.append({"name": spec.name, "kind": spec.kind}
                           | await run_single(spec, port, key, investors, SEED + number))
            continue
        stats = await run_phase(spec, port, key, investors, SEED + number)
        rps = len(stats.latencies_ms) / stats.window_seconds
        log(f"{spec.name}: {rps:.0f} req/s, p99 {percentile(stats.latencies_ms, 99):.2f} ms")
        results.append({"name": spec.name, "kind": spec.kind, "rps": rps, **stats.__dict__})
    return results


def client_main(args_path: str, result_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    gc.collect()
    gc.freeze()
    results = asyncio.run(client_phases(args))
    Path(result_path).write_text(json.dumps(results))


def run_client(port: int, key: str, investors: list[str], phases: list[PhaseSpec]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        args_path, result_path = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args = {"port": port, "key": key, "investors": investors, "phases": [p.__dict__ for p in phases]}
        args_path.write_text(json.dumps(args))
        command = [sys.executable, str(Path(__file__).resolve()), "--client", str(args_path)]
        command.append(str(result_path))
        budget = sum(p.warmup + p.seconds + PHASE_TIMEOUT_SLACK for p in phases)
        completed = subprocess.run(command, stdout=sys.stderr, cwd=ROOT, timeout=budget, check=False)
        if completed.returncode != 0:
            msg = f"the load client failed with exit code {completed.returncode}"
            raise RuntimeError(msg)
        results: list[dict[str, Any]] = json.loads(result_path.read_text())
    return results


@dataclass
class Pooled:
    """The rounds of one kind at `BENCH_CONCURRENCY` connections, taken together."""

    rps: float
    latencies: list[float]
    errors: int
    rounds_rps: list[float]

    @classmethod
    def of(cls, phases: list[dict[str, Any]]) -> Pooled:
        latencies = [x for phase in phases for x in phase["latencies_ms"]]
        rps = len(latencies) / sum(p["window_seconds"] for p in phases)
        return cls(rps, latencies, sum(p["errors"] for p in phases), [round(p["rps"], 1) for p in phases])


def described(samples: list[float]) -> dict[str, Any]:
    """What `--explain` shows of a sample of latencies (ms)."""
    return {"p50_ms": round(statistics.median(samples), 3), "max_ms": round(max(samples), 3),
            "samples": len(samples)}


# ----- main -----


def phases() -> list[PhaseSpec]:
    concurrent = [
        PhaseSpec(f"{kind}_c{CONCURRENCY}_r{number}", kind, CONCURRENCY, SECONDS, MAX_REQUESTS, WARMUP)
        for number in range(1, ROUNDS + 1)
        for kind in ("healthz", "portfolio")
    ]
    return [*concurrent, PhaseSpec("single_connection", "single", 1, SINGLE_SECONDS, SINGLE_REQUESTS, WARMUP)]


def main(explain: bool) -> None:
    log(f"{EVENTS} events, {INVESTORS} investors, {CONCURRENCY} connections, {ROUNDS} rounds of {SECONDS}s")
    with scratch_schema(log, prefix="bench_api_", digits=10) as schema:
        prepared = generate(schema)
        gc.collect()
        key, catch_up_seconds = project(schema, prepared.head)
        with server(schema) as (_, port):
            checked = check_portfolios(port, key, prepared)
            results = run_client(port, key, prepared.sample, phases())
    healthz = Pooled.of([r for r in results if r["kind"] == "healthz"])
    folio = Pooled.of([r for r in results if r["kind"] == "portfolio"])
    single = next(r for r in results if r["kind"] == "single")
    errors = healthz.errors + folio.errors + single["errors"]
    history = {
        "events": prepared.events, "investors": INVESTORS, "sampled_investors": len(prepared.sample),
        "assets_held_per_sampled_investor": round(prepared.holdings_per_sampled, 2),
        "portfolios_checked": checked, "generate_seconds": round(prepared.generate_seconds, 1),
        "catch_up_seconds": round(catch_up_seconds, 1),
    }
    alone, health = single["samples"]["portfolio"], single["samples"]["healthz"]
    p99 = percentile(alone, 99)
    measure(
        "api_portfolio_p99", p99, "ms", percentile(health, 99),
        "GET /healthz p99, single connection, same server, interleaved", f"<= {TARGET_P99_MS:.0f}",
        p99 <= TARGET_P99_MS and errors == 0,
        {**described(alone), "baseline_p50_ms": round(statistics.median(health), 3), **history}
        if explain else None,
        errors=errors,
    )
    ratio = folio.rps / healthz.rps
    measure(
        "api_portfolio_throughput", folio.rps, "req/s", healthz.rps,
        f"GET /healthz, {CONCURRENCY} connections, same server", f">= {TARGET_THROUGHPUT}",
        ratio >= TARGET_THROUGHPUT and errors == 0,
        {"rounds_rps": folio.rounds_rps, "baseline_rounds_rps": healthz.rounds_rps,
         "seconds_per_round": SECONDS, **described(folio.latencies)} if explain else None,
        errors=errors,
    )
    measure(
        "api_portfolio_p99_concurrent", percentile(folio.latencies, 99), "ms",
        percentile(healthz.latencies, 99),
        f"GET /healthz p99, {CONCURRENCY} connections, same server", None, None,
        described(folio.latencies) if explain else None,
    )
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


def analytics_main(explain: bool) -> None:
    """Only the analytics measures: p99 of the analytic portfolio and of a 365-point history,
    each against GET /healthz p99, interleaved on one persistent connection to the same server."""
    with scratch_schema(log, prefix="bench_analytics_", digits=10) as schema:
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
    shape = {"flows": flows, "positions": len(folio["positions"]), "events": head}
    for name, kind, target, extra in (
        ("api_analytics_portfolio_p99", "portfolio", TARGET_ANALYTICS_P99_MS,
         {"xirr_bps": folio["totals"]["xirr_bps"]}),
        ("api_analytics_history_p99", "history", TARGET_HISTORY_P99_MS, {"points": len(history["points"])}),
    ):
        measure(
            name, p99[kind], "ms", p99["healthz"],
            "GET /healthz p99, same server, one connection, interleaved",
            f"<= {target:.0f}", p99[kind] <= target,
            {**described(samples[kind]), **shape, **extra} if explain else None,
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
        investment, purchase = place_investment(asset, main, True, LISTS_MOVEMENTS * asset.unit_price)
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
    with scratch_schema(log, prefix="bench_lists_", digits=10) as schema:
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
                for run, into in ((walk, walks), (raw_select, selects), (raw_pages, paged)):
                    began = time.perf_counter()
                    assert run() == LISTS_INVESTORS
                    into.append(time.perf_counter() - began)
            floor = lists_floor(port, get_body, raw_pages, statistics.median(selects[2:])) if explain else {}
            raw.close()
            conn_http.close()
    p99 = {name: percentile(values, 99) for name, values in samples.items()}
    for kind in ("first", "last"):
        measure(
            f"api_statement_{kind}_page_p99", p99[kind], "ms", p99["healthz"],
            "GET /healthz p99, same server, one connection, interleaved", f"<= {TARGET_LISTS_P99_MS:.0f}",
            p99[kind] <= TARGET_LISTS_P99_MS,
            {**described(samples[kind]), "events": head, "movements": movements, "page_items": 100}
            if explain else None,
        )
    rows = LISTS_INVESTORS
    rate, baseline = rows / statistics.median(walks[2:]), rows / statistics.median(selects[2:])
    measure(
        "api_investor_list_rate", rate, "rows/s", baseline,
        "one raw SELECT of the same rows and columns (psycopg, fetchall), interleaved",
        f">= {TARGET_LISTS_RATE}", rate / baseline >= TARGET_LISTS_RATE,
        {"rows": rows, "page_items": LISTS_PAGE, "walks": LISTS_WALKS,
         "raw_pages_rows_per_s": round(rows / statistics.median(paged[2:])), "floor": floor}
        if explain else None,
    )


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


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        client_main(sys.argv[2], sys.argv[3])
    else:
        args = arguments(
            __doc__, ("--analytics", "only the analytics measures"), ("--lists", "only the lists")
        )
        if args.analytics:
            analytics_main(args.explain)
        elif args.lists:
            lists_main(args.explain)
        else:
            main(args.explain)
