"""Reconciliation benchmark (SPEC section 8, "reconcile"): 100,000 holders in <= 5 s, on PostgreSQL.

Run from the repository root: `.venv/bin/python bench/reconcile.py`.

Everything runs in one fresh PostgreSQL schema of `LEDGER_BENCH_DATABASE_URL` (default: the
test database), dropped at the end (also on failure); the read models live in the same schema.

1. History (not timed), made like bench/project.py makes its history: the aggregates' own
   command methods driven in memory (every rule checked) and their events appended with
   `app.events.put` in batches (the real recorder, hash chain included). One asset,
   registered, approved, offering, bound to a token; `BENCH_HOLDERS` investors (default
   100,000), each registered with a wallet (wallet claim), KYC approved, an investment
   placed (supply reserved) and paid (tokens issued). The chain side as the mirror would
   have recorded it: a `ChainMirror` started at the binding block, the token's `Unpaused`,
   then per holder the identity registry's `IdentityRegistered` and the token's mint
   (`Transfer` from 0x0), `BENCH_LOGS_PER_BLOCK` logs a block, with one `ChainMirror.Advanced`
   per 5,000 logs (as `Mirror.sync` records them). Then `ProjectionRunner.catch_up()` builds
   every read model.
2. Baseline: the rows reconciliation needs (the asset's holdings, every investor wallet, the
   asset's chain logs up to the final block, in block order), read with plain psycopg and
   fetched (best of 3).
3. `reconcile_100k`: `reconcile(app, engine, asset_id)` on the consistent state (comparison
   and recording of the run), `BENCH_RUNS` runs (default 3); value = the median. It must find
   no difference.
4. Planted differences: a few more mirrored logs (a transfer between two holders, a holder's
   whole balance to an unknown wallet, a partial freeze, an address freeze) and the runner
   caught up; one more reconcile must report exactly the expected differences.
5. A cProfile of one more run gives the breakdown (ledger side, chain side, compare, record).

stdout carries one JSON object per measure and nothing else; progress goes to stderr.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eventsourcing.domain import Aggregate

from adapters.chain.reconcile import reconcile
from common import PG_URL, emit, logger, scratch_schema, source_state, with_schema
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.asset import Asset
from ledger.domain.chain import ChainLog, ChainMirror
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor, WalletClaim
from ledger.domain.terms import AssetTerms, InvestorRegistration
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for

HOLDERS = int(os.environ.get("BENCH_HOLDERS", "100000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PUT_BATCH = int(os.environ.get("BENCH_PUT_BATCH", "5000"))
LOGS_PER_BLOCK = int(os.environ.get("BENCH_LOGS_PER_BLOCK", "200"))
MIRROR_LOGS = 5_000  # logs per ChainMirror.Advanced, as Mirror.sync records them
TARGET_SECONDS = 5.0

ASSET_ID = "BENCH-RECON-01"
CHAIN_ID = 31337
ZERO = "0x0000000000000000000000000000000000000000"
TOKEN = to_checksum_address("0x" + "a1" * 20)
REGISTRY = to_checksum_address("0x" + "b2" * 20)
AGENT = to_checksum_address("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")
START_BLOCK = 100
UNIT_PRICE = 100_000
TERMS = {
    "asset_id": ASSET_ID,
    "name": "Reconciliation benchmark toll road",
    "symbol": "BRC",
    "decimals": 0,
    "currency": "IDR",
    "unit_price": UNIT_PRICE,
    "authorized_supply": 10**15,
    "min_investment": UNIT_PRICE,
    "max_investment": 10**14,
    "allowed_countries": ["ID", "SG"],
}


log = logger("reconcile")


def hex32(text: str) -> str:
    return "0x" + keccak(text=text).hex()


def wallet_of(index: int) -> str:
    return to_checksum_address(keccak(text=f"bench-reconcile-wallet-{index}")[12:])


# ----- the history -----


class History:
    """Commands run on in-memory aggregates, their events appended in order in big batches."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.buffer: list[Any] = []
        self.events = 0
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.asset = Asset.register(AssetTerms.parse(TERMS))
        self.wallets: dict[str, str] = {}  # investor -> wallet
        self.quantities: dict[str, int] = {}
        self.mirror: ChainMirror | None = None
        self.block = START_BLOCK
        self.log_index = 0
        self.unflushed_logs = 0

    def commit(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self.buffer.extend(aggregate.collect_events())
        if len(self.buffer) >= PUT_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.app.events.put(self.buffer)
            self.events += len(self.buffer)
            self.buffer = []

    def ledger(self, holders: int) -> None:
        asset = self.asset
        self.commit(asset)
        asset.approve()
        self.commit(asset)
        asset.set_offering(True)
        self.commit(asset)
        asset.bind_token(CHAIN_ID, TOKEN, REGISTRY)
        self.commit(asset)
        started = time.perf_counter()
        for number in range(holders):
            investor_id = f"inv-{number:06d}"
            wallet = wallet_of(number)
            investor = Investor.register(
                InvestorRegistration(investor_id, "ID" if number % 10 else "SG", wallet, number % 4 == 0)
            )
            self.commit(WalletClaim.claim(wallet, investor_id), investor)
            investor.update_kyc("approved", None)
            self.commit(investor)
            amount = UNIT_PRICE * (1 + number % 997) + number % 7
            purchase = asset.check_investment(investor_id, investor.eligible_for(asset, self.now), amount)
            investment = Investment.place(investor_id, ASSET_ID, amount, purchase)
            asset.reserve(investment.id, investor_id, purchase.quantity)
            self.commit(asset, investment)
            investment.confirm_payment(f"PAY-{number:08d}")
            asset.issue(investment.id, investor_id, purchase.quantity, self.now)
            self.commit(investment, asset)
            self.wallets[investor_id] = wallet
            self.quantities[investor_id] = purchase.quantity
            if (number + 1) % 20_000 == 0:
                elapsed = time.perf_counter() - started
                log(f"ledger: {number + 1}/{holders} holders, {self.events} events appended, {elapsed:.1f}s")
        self.flush()

    # the chain side, as Mirror.sync records it

    def chain_log(self, address: str, name: str, args: dict[str, Any]) -> None:
        block_hash = hex32(f"block-{self.block}")
        mirrored = ChainLog.mirrored(
            chain_id=CHAIN_ID,
            asset_id=ASSET_ID,
            address=address,
            block_number=self.block,
            block_hash=block_hash,
            log_index=self.log_index,
            tx_hash=hex32(f"tx-{self.block}-{self.log_index // 2}"),
            name=name,
            args=args,
            problem=None,
        )
        self.buffer.append(mirrored)
        if len(self.buffer) >= PUT_BATCH:
            self.flush()
        self.log_index += 1
        self.unflushed_logs += 1
        if self.log_index >= LOGS_PER_BLOCK:
            self.block, self.log_index = self.block + 1, 0
        if self.unflushed_logs >= MIRROR_LOGS:
            self.advance()

    def advance(self) -> None:
        """The mirror's checkpoint after a range, up to the last complete block (all final)."""
        assert self.mirror is not None
        if self.log_index:
            self.block, self.log_index = self.block + 1, 0
        to_block = self.block - 1
        window = [[to_block, hex32(f"block-{to_block}"), hex32(f"block-{to_block - 1}")]]
        self.mirror.advance(to_block, to_block, window, {})
        self.commit(self.mirror)
        self.unflushed_logs = 0

    def chain(self) -> None:
        self.mirror = ChainMirror.start(
            chain_id=CHAIN_ID,
            asset_id=ASSET_ID,
            token=TOKEN,
            identity_registry=REGISTRY,
            start_block=START_BLOCK,
            paused=True,
            contracts={"chain_id": CHAIN_ID, "token": TOKEN, "identity_registry": REGISTRY},
        )
        self.commit(self.mirror)
        self.chain_log(TOKEN, "Unpaused", {"_userAddress": AGENT})
        for number, (investor_id, wallet) in enumerate(self.wallets.items()):
            identity = to_checksum_address(keccak(text=f"identity-{number}")[12:])
            self.chain_log(REGISTRY, "IdentityRegistered", {"investorAddress": wallet, "identity": identity})
            minted = self.quantities[investor_id]
            self.chain_log(TOKEN, "Transfer", {"from": ZERO, "to": wallet, "value": minted})
        self.advance()
        self.flush()

    def plant(self) -> list[tuple[str, str | None]]:
        """Chain facts the ledger does not know; returns the (kind, investor) differences they make."""
        ids = list(self.wallets)
        a, b, c, d, e = ids[11], ids[2_222 % len(ids)], ids[-3], ids[len(ids) // 2], ids[len(ids) // 3]
        stranger = to_checksum_address(keccak(text="a wallet no investor holds")[12:])
        self.chain_log(TOKEN, "Transfer", {"from": self.wallets[a], "to": self.wallets[b], "value": 1})
        everything = self.quantities[c]
        self.chain_log(TOKEN, "Transfer", {"from": self.wallets[c], "to": stranger, "value": everything})
        self.chain_log(TOKEN, "TokensFrozen", {"_userAddress": self.wallets[d], "_amount": 1})
        self.chain_log(
            TOKEN, "AddressFrozen", {"_userAddress": self.wallets[e], "_isFrozen": True, "_owner": AGENT}
        )
        self.advance()
        self.flush()
        return [
            ("quantity_mismatch", a),
            ("quantity_mismatch", b),
            ("missing_on_chain", c),
            ("unknown_wallet", None),
            ("frozen_mismatch", d),
            ("address_freeze_mismatch", e),
        ]


# ----- the measures -----


def raw_read(schema: str, final_block: int) -> tuple[float, int]:
    """The rows reconciliation reads, with plain psycopg: (seconds, rows)."""
    with psycopg.connect(PG_URL, options=f"-csearch_path={schema}") as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = conn.execute(
                "SELECT investor_id, quantity, frozen, address_frozen FROM rm_holdings WHERE asset_id = %s",
                [ASSET_ID],
            ).fetchall()
            count = len(rows)
            count += len(conn.execute("SELECT wallet, investor_id FROM rm_investor_wallets").fetchall())
            count += len(
                conn.execute(
                    "SELECT name, from_wallet, to_wallet, amount, flag FROM rm_chain_logs"
                    " WHERE asset_id = %s AND block_number <= %s AND retracted IS FALSE AND problem IS NULL"
                    " ORDER BY block_number, log_index",
                    [ASSET_ID, final_block],
                ).fetchall()
            )
        return time.perf_counter() - started, count


def timed_reconcile(app: LedgerApplication, engine: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    outcome = reconcile(app, engine, ASSET_ID)
    return time.perf_counter() - started, outcome.result


def latest_report(engine: Any) -> dict[str, Any]:
    from projections.chain import latest_reconciliation

    with engine.connect() as conn:
        report = latest_reconciliation(conn, ASSET_ID)
    assert report is not None
    return report


def breakdown(app: LedgerApplication, engine: Any) -> dict[str, float]:
    """Seconds spent in each part of one reconcile run (cProfile, cumulative)."""
    profiler = cProfile.Profile()
    profiler.enable()
    reconcile(app, engine, ASSET_ID)
    profiler.disable()
    stats = pstats.Stats(profiler)
    parts = {
        "_ledger_side": "ledger_side_s",
        "chain_state": "chain_state_s",
        "compare": "compare_s",
        "unsettled": "outbox_s",
        "record_reconciliation": "record_s",
        "reconcile": "total_profiled_s",
    }
    found: dict[str, float] = {}
    for (path, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function in parts and ("/src/" in path):
            found[parts[function]] = round(found.get(parts[function], 0.0) + row[3], 3)
    profiler.dump_stats("/tmp/ledger_reconcile.prof")
    return found


def main() -> None:
    overall = time.perf_counter()
    source = source_state()
    log(f"commit {source['commit']} (src dirty: {source['src_dirty']}), load {os.getloadavg()[0]:.2f}")
    with scratch_schema(log) as schema:
        url = with_schema(PG_URL, schema)
        app = LedgerApplication(store_env(url))
        engine = engine_for(url)
        try:
            run(app, engine, schema, source)
        finally:
            app.close()
            engine.dispose()
    log(f"done in {time.perf_counter() - overall:.1f}s")


def run(app: LedgerApplication, engine: Any, schema: str, source: dict[str, Any]) -> None:
    upgrade(engine)
    history = History(app)
    started = time.perf_counter()
    history.ledger(HOLDERS)
    history.chain()
    elapsed = time.perf_counter() - started
    log(f"history: {history.events} events in {elapsed:.1f}s, final block {history.block - 1}")
    runner = ProjectionRunner(app, engine)
    started = time.perf_counter()
    projected = runner.catch_up()
    log(f"read models: {projected} events caught up in {time.perf_counter() - started:.1f}s")

    final_block = history.block - 1
    raw_runs = [raw_read(schema, final_block) for _ in range(3)]
    raw_seconds, raw_rows = min(raw_runs)
    log(f"raw read: {raw_rows} rows, best {raw_seconds:.3f}s of {[round(s, 3) for s, _ in raw_runs]}")

    load = os.getloadavg()[0]
    runs = [timed_reconcile(app, engine) for _ in range(RUNS)]
    seconds = [s for s, _ in runs]
    value = statistics.median(seconds)
    runner.catch_up()
    report = latest_report(engine)
    consistent_differences = len(report["differences"])
    log(
        f"reconcile: {report['holders_checked']} holders, {consistent_differences} differences, runs"
        f" {[round(s, 3) for s in seconds]}"
    )

    expected = history.plant()
    runner.catch_up()
    planted_seconds, _ = timed_reconcile(app, engine)
    runner.catch_up()
    planted = latest_report(engine)
    found = sorted((d["kind"], d["investor_id"] or "") for d in planted["differences"])
    wanted = sorted((kind, investor or "") for kind, investor in expected)
    log(f"planted: expected {wanted}, found {found} in {planted_seconds:.3f}s")
    parts = breakdown(app, engine)
    log(f"breakdown of one run: {parts}")

    emit(
        {
            "name": "reconcile_100k",
            "value": round(value, 3),
            "unit": "s",
            "baseline": round(raw_seconds, 3),
            "baseline_unit": "s",
            "baseline_name": "plain psycopg read of the same rows (holdings, wallets, chain logs), best of 3",
            "ratio": round(value / raw_seconds, 2),
            "target": f"<= {TARGET_SECONDS:.0f}",
            "pass": value <= TARGET_SECONDS and consistent_differences == 0 and found == wanted,
            "holders": report["holders_checked"],
            "differences": consistent_differences,
            "runs_seconds": [round(s, 3) for s in seconds],
            "max_seconds": round(max(seconds), 3),
            "baseline_rows": raw_rows,
            "chain_logs": 2 * HOLDERS + 1,
            "events_in_store": app.admin.head_position(),
            "differences_expected": len(wanted),
            "differences_found": len(found),
            "differences_exact": found == wanted,
            "seconds_with_differences": round(planted_seconds, 3),
            "breakdown": parts,
            "load_average_1m": round(load, 2),
            **source,
        }
    )


if __name__ == "__main__":
    main()
