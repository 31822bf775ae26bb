"""Reconciliation benchmark (SPEC section 8, "reconcile"): 100,000 holders in <= 5 s, on PostgreSQL.

Run from the repository root: `.venv/bin/python bench/reconcile.py [--explain]`.

Everything runs in one fresh PostgreSQL schema of `LEDGER_BENCH_DATABASE_URL` (default: the
test database), dropped at the end (also on failure); the read models live in the same schema.

History (not timed), made with `common.EventBatches`: one asset, registered, approved,
offering, bound to a token; `BENCH_HOLDERS` investors (default 100,000), each registered with a
wallet, KYC approved, an investment placed and paid. The chain side as the mirror would have
recorded it: a `ChainMirror` started at the binding block, the token's `Unpaused`, then per
holder `IdentityRegistered` and the mint (`Transfer` from 0x0), `BENCH_LOGS_PER_BLOCK` logs a
block, one `ChainMirror.Advanced` per 5,000 logs (as `Mirror.sync` records them); then the read
models are caught up. Measure and target:

- `reconcile_100k`: `reconcile(app, engine, asset_id)` on the consistent state (comparison and
  recording of the run), the median of `BENCH_RUNS` runs (default 3), against reading the rows
  it needs (the asset's holdings, every investor wallet, the asset's chain logs up to the final
  block) with plain psycopg, best of 3. Target <= 5 s, no difference found; and after a few
  planted chain facts (a transfer between holders, a whole balance to an unknown wallet, a
  partial freeze, an address freeze), exactly the expected differences (`differences_exact`).

`--explain` adds every run's seconds, row and event counts, and the commit measured. stdout
carries one JSON object per measure; progress goes to stderr.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from adapters.chain.reconcile import reconcile
from common import (
    PG_URL,
    EventBatches,
    arguments,
    logger,
    measure,
    place_investment,
    scratch_schema,
    source_state,
    timed,
    with_schema,
)
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.asset import Asset
from ledger.domain.chain import ChainLog, ChainMirror
from ledger.domain.investor import Investor, WalletClaim
from ledger.domain.terms import AssetTerms, InvestorRegistration
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for

HOLDERS = int(os.environ.get("BENCH_HOLDERS", "100000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
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


class History(EventBatches):
    """The asset, its holders and the mirrored chain logs."""

    def __init__(self, app: LedgerApplication) -> None:
        super().__init__(app)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.asset = Asset.register(AssetTerms.parse(TERMS))
        self.wallets: dict[str, str] = {}  # investor -> wallet
        self.quantities: dict[str, int] = {}
        self.mirror: ChainMirror | None = None
        self.block = START_BLOCK
        self.log_index = 0
        self.unflushed_logs = 0

    def ledger(self, holders: int) -> None:
        asset = self.asset
        self.commit("register_asset", asset)
        asset.approve()
        self.commit("approve_asset", asset)
        asset.set_offering(True)
        self.commit("set_offering", asset)
        asset.bind_token(CHAIN_ID, TOKEN, REGISTRY)
        self.commit("bind_token", asset)
        started = time.perf_counter()
        for number in range(holders):
            investor_id = f"inv-{number:06d}"
            wallet = wallet_of(number)
            investor = Investor.register(
                InvestorRegistration(investor_id, "ID" if number % 10 else "SG", wallet, number % 4 == 0)
            )
            self.commit("register_investor", WalletClaim.claim(wallet, investor_id), investor)
            investor.update_kyc("approved", None)
            self.commit("update_kyc", investor)
            amount = UNIT_PRICE * (1 + number % 997) + number % 7
            eligible = investor.eligible_for(asset, self.now)
            investment, purchase = place_investment(asset, investor_id, eligible, amount)
            self.commit("place_investment", asset, investment)
            investment.confirm_payment(f"PAY-{number:08d}")
            asset.issue(investment.id, investor_id, purchase.quantity, self.now)
            self.commit("confirm_payment", investment, asset)
            self.wallets[investor_id] = wallet
            self.quantities[investor_id] = purchase.quantity
            if (number + 1) % 20_000 == 0:
                elapsed = time.perf_counter() - started
                log(f"ledger: {number + 1}/{holders} holders, {self.events} events, {elapsed:.1f}s")
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
        self.record("mirror_log", [mirrored])
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
        self.commit("mirror_advanced", self.mirror)
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
        self.commit("mirror_started", self.mirror)
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


def latest_report(engine: Any) -> dict[str, Any]:
    from projections.chain import latest_reconciliation

    with engine.connect() as conn:
        report = latest_reconciliation(conn, ASSET_ID)
    assert report is not None
    return report


def main(explain: bool) -> None:
    overall = time.perf_counter()
    with scratch_schema(log) as schema:
        url = with_schema(PG_URL, schema)
        app = LedgerApplication(store_env(url))
        engine = engine_for(url)
        try:
            run(app, engine, schema, explain)
        finally:
            app.close()
            engine.dispose()
    log(f"done in {time.perf_counter() - overall:.1f}s")


def run(app: LedgerApplication, engine: Any, schema: str, explain: bool) -> None:
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

    def reconciled() -> float:
        return timed(lambda: reconcile(app, engine, ASSET_ID))[1]

    seconds = [reconciled() for _ in range(RUNS)]
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
    planted_seconds = reconciled()
    runner.catch_up()
    planted = latest_report(engine)
    found = sorted((d["kind"], d["investor_id"] or "") for d in planted["differences"])
    wanted = sorted((kind, investor or "") for kind, investor in expected)
    log(f"planted: expected {wanted}, found {found} in {planted_seconds:.3f}s")

    measure(
        "reconcile_100k", value, "s", raw_seconds,
        "plain psycopg read of the same rows (holdings, wallets, chain logs), best of 3",
        f"<= {TARGET_SECONDS:.0f}",
        value <= TARGET_SECONDS and consistent_differences == 0 and found == wanted,
        {
            "runs_seconds": [round(s, 3) for s in seconds], "baseline_rows": raw_rows,
            "chain_logs": 2 * HOLDERS + 1, "events_in_store": app.admin.head_position(),
            "differences_expected": len(wanted), "differences_found": len(found),
            "seconds_with_differences": round(planted_seconds, 3), **source_state(),
        } if explain else None,
        holders=report["holders_checked"], differences=consistent_differences,
        differences_exact=found == wanted,
    )


if __name__ == "__main__":
    main(arguments(__doc__).explain)
