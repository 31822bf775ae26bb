"""Mirror benchmark (SPEC section 8, "mirror"): chain logs ingested into the ledger per second,
against raw `eth_getLogs` over the same block range from the same anvil, on PostgreSQL.

Run from the repository root: `.venv/bin/python bench/mirror.py [--explain]`.

1. Chain: a fresh anvil (`Anvil.start`, block gas limit `BENCH_GAS_LIMIT`). A ledger on a
   fresh PostgreSQL schema of `LEDGER_BENCH_DATABASE_URL` (default: the test database)
   registers and approves an asset; `ChainService.deploy` deploys its T-REX suite with
   `TrexClient`, unpauses it, binds it and attaches the mirror at the deployment block.
   `BENCH_WALLETS` wallets (default 150) get an identity (`TrexClient.ensure_identity`)
   and a mint (`TrexClient.agent_call`). Then `BENCH_TRANSFERS` (default 10,000) ERC-20
   transfers by the holders themselves, to random other holders: automine off, the
   holders' transactions sent in JSON-RPC batches of `BENCH_PER_BLOCK` (default 150) and
   one block mined per batch. The holders' transactions go through `eth_sendTransaction`
   with anvil's auto-impersonation (a dev-chain shortcut: signing locally with eth_account
   costs about 5 ms a transaction here, which would make the setup the longest phase);
   the token executes them exactly as signed ones.
2. Baseline: raw `eth_getLogs` of the token's and the identity registry's logs over the
   whole range (deployment block to head) with plain `requests`, JSON parsed; best of
   `BENCH_RAW_RUNS` (default 3).
Measures and targets:

- `mirror_ingest`: `Mirror.sync(asset_id)` (confirmations `BENCH_CONFIRMATIONS`, default 0)
  from the deployment block to the head: logs recorded in the ledger per second, against the
  baseline. Target >= 0.15 x, and `verified`: the `ChainLog` streams in the store are exactly
  the logs of `eth_getLogs` (same ids, keyed by chain id, block hash and log index; none
  missing, none twice).
- `mirror_resync`: a second sync with nothing new, against the baseline's one read. Target:
  no new logs recorded.

`--explain` adds the range, the counts and the mirror's reads (`get_logs_reads`,
`logs_fetched`: ranges refused for holding more than `MAX_LOGS` logs are read again, smaller;
`refetch_seconds_estimate` is what reading the surplus costs at the baseline's rate). stdout
carries one JSON object per measure; progress goes to stderr. The schema is dropped and anvil
stopped at the end, also on failure.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import requests
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eventsourcing.utils import get_topic
from psycopg import sql

from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import Suite, TokenCall, TrexClient
from common import PG_URL, arguments, logger, measure, scratch_schema, source_state, with_schema
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.chain import ChainLog
from ledger.store import EVENTS_TABLE
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for

WALLETS = int(os.environ.get("BENCH_WALLETS", "150"))
TRANSFERS = int(os.environ.get("BENCH_TRANSFERS", "10000"))
PER_BLOCK = int(os.environ.get("BENCH_PER_BLOCK", "150"))
GAS_LIMIT = int(os.environ.get("BENCH_GAS_LIMIT", "1000000000"))
RAW_RUNS = int(os.environ.get("BENCH_RAW_RUNS", "3"))
CONFIRMATIONS = int(os.environ.get("BENCH_CONFIRMATIONS", "0"))
SEED = int(os.environ.get("BENCH_SEED", "20261121"))

TARGET_INGEST = 0.15  # ledger logs/s >= 0.15 x raw eth_getLogs logs/s
ASSET_ID = "BENCH-MIRROR-01"
INDONESIA = 360  # ISO 3166 numeric of the holders' country (the asset allows "ID")
MINTED = 1_000_000
TRANSFER_GAS = 600_000  # a first transfer to a new holder takes about 243k
MAX_FEE = 100 * 10**9
TIP = 10**9
HOLDER_ETH = 10**21
TRANSFER_SELECTOR = keccak(text="transfer(address,uint256)")[:4]
MIRRORED_TOPIC = get_topic(ChainLog.Mirrored)
TERMS = {
    "asset_id": ASSET_ID,
    "name": "Mirror benchmark toll road",
    "symbol": "BMR",
    "decimals": 0,
    "currency": "IDR",
    "unit_price": 100_000,
    "authorized_supply": 10**12,
    "min_investment": 100_000,
    "max_investment": 10**13,
    "allowed_countries": ["ID"],
}


log = logger("mirror")


class CountingRpc(Rpc):
    """The mirror's RPC client, counting its `eth_getLogs` reads (ranges re-read are wasted work)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.log_reads = 0
        self.logs_fetched = 0

    def logs(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[dict[str, Any]]:
        found = super().logs(addresses, from_block, to_block)
        self.log_reads += 1
        self.logs_fetched += len(found)
        return found


class Ledger:
    """A ledger on its own schema, with its read models migrated, and the chain service over it."""

    def __init__(self, schema: str, node: Anvil, client: TrexClient | None) -> None:
        url = with_schema(PG_URL, schema)
        self.schema = schema
        self.app = LedgerApplication(store_env(url))
        self.engine = engine_for(url)
        upgrade(self.engine)
        self.runner = ProjectionRunner(self.app, self.engine)
        self.rpc = CountingRpc(node.url)
        self.service = ChainService(self.app, self.runner, self.rpc, client, CONFIRMATIONS)

    def close(self) -> None:
        self.rpc.close()
        self.app.close()
        self.engine.dispose()

    def mirrored_ids(self) -> tuple[int, set[str]]:
        """How many `ChainLog.Mirrored` events the store holds, and their stream ids."""
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            rows = conn.execute(
                sql.SQL("SELECT originator_id FROM {}.{} WHERE topic = %s").format(
                    sql.Identifier(self.schema), sql.Identifier(EVENTS_TABLE)
                ),
                [MIRRORED_TOPIC],
            ).fetchall()
        return len(rows), {str(r[0]) for r in rows}

    def head(self) -> int:
        return self.app.admin.head_position()


# ----- the chain: a suite, identities, mints, then many holders' transfers -----


def wallet_address(index: int) -> str:
    return to_checksum_address(keccak(text=f"bench-mirror-wallet-{SEED}-{index}")[12:])


def onboard(client: TrexClient, suite: Suite, wallets: list[str]) -> None:
    started = time.perf_counter()
    for number, wallet in enumerate(wallets, 1):
        client.ensure_identity(suite, wallet, INDONESIA)
        client.agent_call(suite, TokenCall("mint", {"to": wallet, "amount": MINTED}))
        if number % 50 == 0:
            log(f"onboarded {number}/{len(wallets)} wallets in {time.perf_counter() - started:.1f}s")


def transfer_data(to: str, amount: int) -> str:
    return "0x" + (TRANSFER_SELECTOR + abi_encode(["address", "uint256"], [to, amount])).hex()


def send_transfers(node: Anvil, rpc: Rpc, suite: Suite, wallets: list[str]) -> int:
    """`TRANSFERS` holder transfers, `PER_BLOCK` a block; returns how many blocks were mined."""
    rng = random.Random(SEED)
    node.rpc("anvil_autoImpersonateAccount", [True])
    rpc.batch([("anvil_setBalance", [w, hex(HOLDER_ETH)]) for w in wallets])
    nonces = dict.fromkeys(wallets, 0)
    node.set_automine(False)
    started, sent, blocks = time.perf_counter(), 0, 0
    try:
        while sent < TRANSFERS:
            calls = []
            for _ in range(min(PER_BLOCK, TRANSFERS - sent)):
                sender, receiver = rng.sample(wallets, 2)
                tx = {
                    "from": sender,
                    "to": suite.token,
                    "data": transfer_data(receiver, rng.randint(1, 100)),
                    "gas": hex(TRANSFER_GAS),
                    "maxFeePerGas": hex(MAX_FEE),
                    "maxPriorityFeePerGas": hex(TIP),
                    "nonce": hex(nonces[sender]),
                    "value": "0x0",
                }
                nonces[sender] += 1
                calls.append(("eth_sendTransaction", [tx]))
            rpc.batch(calls)
            node.mine(1)
            sent += len(calls)
            blocks += 1
            if blocks % 20 == 0:
                elapsed = time.perf_counter() - started
                log(f"sent {sent}/{TRANSFERS} transfers in {elapsed:.1f}s = {sent / elapsed:.0f} tx/s")
    finally:
        node.set_automine(True)
        node.rpc("anvil_autoImpersonateAccount", [False])
    pending = int(node.rpc("eth_getBlockTransactionCountByNumber", ["pending"]) or "0x0", 16)
    if pending:
        log(f"{pending} transactions still pending: mining them")
        node.mine(1)
        blocks += 1
    return blocks


# ----- the measures -----


def raw_get_logs(url: str, addresses: list[str], first: int, last: int) -> tuple[list[dict[str, Any]], float]:
    """One plain JSON-RPC `eth_getLogs` over the range, parsed: (logs, seconds)."""
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [{"address": addresses, "fromBlock": hex(first), "toBlock": hex(last)}],
    }
    with requests.Session() as session:
        session.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "eth_chainId", "params": []}, timeout=30)
        started = time.perf_counter()
        answer = session.post(url, json=body, timeout=120).json()
        seconds = time.perf_counter() - started
    if "error" in answer:
        msg = f"eth_getLogs refused: {answer['error']}"
        raise RuntimeError(msg)
    logs: list[dict[str, Any]] = answer["result"]
    return logs, seconds


def expected_ids(logs: list[dict[str, Any]], chain_id: int) -> set[str]:
    return {str(ChainLog.create_id(chain_id, e["blockHash"], int(e["logIndex"], 16))) for e in logs}


def main(explain: bool) -> None:
    overall = time.perf_counter()
    node = Anvil.start(gas_limit=GAS_LIMIT)
    log(f"anvil on {node.url}, gas limit {GAS_LIMIT}")
    try:
        with scratch_schema(log) as schema:
            ledger = Ledger(schema, node, TrexClient(node.url, DEV_KEYS[0], timeout=60))
            try:
                run(node, ledger, explain)
            finally:
                ledger.close()
    finally:
        node.stop()
        log("anvil stopped")
    log(f"done in {time.perf_counter() - overall:.1f}s")


def run(node: Anvil, ledger: Ledger, explain: bool) -> None:
    client = ledger.service.client
    assert client is not None
    ledger.app.register_asset(TERMS)
    ledger.app.approve_asset(ASSET_ID)
    suite, _ = ledger.service.deploy(ASSET_ID)
    log(f"suite deployed in block {suite.deployed_at_block}: token {suite.token}")
    wallets = [wallet_address(i) for i in range(WALLETS)]
    onboard(client, suite, wallets)
    started = time.perf_counter()
    blocks_mined = send_transfers(node, ledger.rpc, suite, wallets)
    log(f"{TRANSFERS} transfers in {blocks_mined} blocks, {time.perf_counter() - started:.1f}s")

    head = node.block_number()
    first = suite.deployed_at_block
    addresses = sorted({suite.token, suite.identity_registry})
    runs = [raw_get_logs(node.url, addresses, first, head) for _ in range(RAW_RUNS)]
    raw_logs = runs[0][0]
    raw_seconds = min(seconds for _, seconds in runs)
    raw_rate = len(raw_logs) / raw_seconds
    transfers_on_chain = sum(
        1
        for entry in raw_logs
        if entry["topics"][0] == "0x" + keccak(text="Transfer(address,address,uint256)").hex()
        and int(entry["topics"][1], 16) != 0
    )
    log(
        f"raw eth_getLogs: {len(raw_logs)} logs of blocks {first}..{head} in {raw_seconds * 1000:.1f} ms"
        f" (best of {RAW_RUNS}: {', '.join(f'{s * 1000:.1f}' for _, s in runs)}) = {raw_rate:.0f} logs/s;"
        f" {transfers_on_chain} holder transfers among them"
    )

    before = ledger.head()
    started = time.perf_counter()
    report = ledger.service.mirror.sync(ASSET_ID)
    seconds = time.perf_counter() - started
    appended = ledger.head() - before
    rate = report.logs / seconds
    reads_measured, fetched_measured = ledger.rpc.log_reads, ledger.rpc.logs_fetched
    stored, ids = ledger.mirrored_ids()
    expected = expected_ids(raw_logs, suite.chain_id)
    verified = stored == len(raw_logs) == report.logs and ids == expected
    log(
        f"mirror sync: {report.logs} logs in {seconds:.2f}s = {rate:.0f} logs/s, {appended} events appended;"
        f" store holds {stored} ChainLog.Mirrored ({len(ids - expected)} unexpected,"
        f" {len(expected - ids)} missing); report {report}"
    )

    started = time.perf_counter()
    again = ledger.service.mirror.sync(ASSET_ID)
    resync_seconds = time.perf_counter() - started
    stored_after, _ = ledger.mirrored_ids()
    started = time.perf_counter()
    caught_up = ledger.runner.catch_up()
    log(f"read models caught up: {caught_up} events in {time.perf_counter() - started:.1f}s")

    code = source_state() if explain else {}
    measure(
        "mirror_ingest", rate, "logs/s", raw_rate,
        f"raw eth_getLogs of the range, plain requests + JSON parse, best of {RAW_RUNS}",
        f">= {TARGET_INGEST}", rate >= TARGET_INGEST * raw_rate and verified,
        {
            "blocks": head - first + 1, "block_range": f"{first}..{head}", "seconds": round(seconds, 3),
            "baseline_seconds": round(raw_seconds, 4), "events_appended": appended,
            "chain_logs_in_store": stored, "eth_get_logs_logs": len(raw_logs),
            "holder_transfers": transfers_on_chain, "transfers_sent": TRANSFERS, "wallets": WALLETS,
            "unrecognised": report.unrecognised, "get_logs_reads": reads_measured,
            "logs_fetched": fetched_measured,
            "refetch_seconds_estimate": round((fetched_measured - report.logs) / raw_rate, 3),
            "confirmations": CONFIRMATIONS, **code,
        } if explain else None,
        logs=report.logs, verified=verified,
    )
    measure(
        "mirror_resync", resync_seconds * 1000, "ms", raw_seconds * 1000,
        "raw eth_getLogs of the whole range (the mirror's first read)", "no new logs recorded",
        again.logs == 0 and stored_after == stored,
        {"chain_logs_in_store": stored_after, **code} if explain else None,
        logs=again.logs,
    )


if __name__ == "__main__":
    main(arguments(__doc__).explain)
