"""Verifiable-history benchmark (SPEC section 8): Merkle proofs over a long log, tree building,
and appends while the tree is kept.

Run from the repository root: `.venv/bin/python bench/proofs.py [--explain]`.

One fresh PostgreSQL schema (dropped at the end) gets `BENCH_PROOF_EVENTS` events (default
1,000,000: transfers appended as the committer appends them, hash chain included). Measures:

- `proofs_tree_build`: events/s of building the Merkle tree for that existing history
  (`TransparencyLog.extend`), against reading the same events raw from the store (the
  runner's tuple reads) in the same run. Target >= 0.5 x.
- `proofs_inclusion_p95`, `proofs_consistency_p95`: p95 of `GET /v1/audit/proofs/inclusion`
  (a random position, the whole tree) and `/consistency` (a random older size to the whole
  tree) over HTTP from `ledger serve` (one keep-alive connection, one request at a time),
  against `/healthz` the same way. Target <= 5 ms.
- `proofs_append_with_tree`: transfers/s of 16 clients while another process extends the
  tree every second (as the worker's periodic signing does), against the same without it.
  Target >= 0.9 x.

`--explain` adds the proofs' p50s. stdout carries one JSON object per measure; progress goes
to stderr.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import statistics
import time
from typing import Any

from append import ledger_transfers, set_up
from coldstart import build_history
from common import HOST, PG_URL, arguments, logger, measure, percentile, scratch_schema, served, with_schema

# isort: split
from tests.support import holding, onboard

from adapters import bootstrap
from adapters.api.keys import KeyStore
from ledger.application import LedgerApplication
from ledger.config import Settings, store_env

EVENTS = int(os.environ.get("BENCH_PROOF_EVENTS", "1000000"))
REQUESTS = int(os.environ.get("BENCH_PROOF_REQUESTS", "400"))
SECONDS = 4.0
log = logger("proofs")


def raw_read_rate(app: LedgerApplication) -> float:
    started, count, after = time.perf_counter(), 0, 0
    while rows := app.recorder.select_event_rows(after, 50_000):  # type: ignore[attr-defined]
        count += len(rows)
        after = rows[-1][0]
    return count / (time.perf_counter() - started)


def latencies(port: int, key: str, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    found: list[float] = []
    try:
        for path in paths:
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            found.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                msg = f"{path}: {response.status} {body[:200]!r}"
                raise RuntimeError(msg)
    finally:
        conn.close()
    return found[10:]  # the first ones warm the connection and the server up


def _keep_extending(url: str, stop: Any) -> None:
    app = LedgerApplication(store_env(url))
    try:
        while not stop.is_set():
            app.transparency.extend()
            stop.wait(1.0)
    finally:
        app.close()


def appends_with_tree(app: LedgerApplication, url: str, asset_id: str) -> tuple[float, float]:
    """Transfers/s without and with a process extending the tree every second."""
    context = multiprocessing.get_context("spawn")
    ledger_transfers(app, asset_id, 1.0, 16, "warm-up")  # the asset brought up to the history's head
    without = ledger_transfers(app, asset_id, SECONDS, 16, "no-tree").rate
    stop = context.Event()
    extender = context.Process(target=_keep_extending, args=(url, stop))
    extender.start()
    try:
        time.sleep(2.0)  # started, and caught up with the history
        with_tree = ledger_transfers(app, asset_id, SECONDS, 16, "with-tree").rate
    finally:
        stop.set()
        extender.join(timeout=60)
    return without, with_tree


def main() -> None:
    explain = arguments(__doc__).explain
    with scratch_schema(log) as schema:
        url = with_schema(PG_URL, schema)
        app = LedgerApplication(store_env(url))
        try:
            asset_id = set_up(app)  # funded investors for the append measure
            for investor_id in ("alice", "bob"):
                onboard(app, investor_id)
            holding(app, asset_id, "alice", 100)
            build_history(app, asset_id, EVENTS)
            raw = raw_read_rate(app)
            started = time.perf_counter()
            size = app.transparency.extend()
            built = size / (time.perf_counter() - started)
            log(f"tree of {size} leaves at {built:.0f}/s; raw read {raw:.0f}/s")
            measure("proofs_tree_build", built, "events/s", raw, "raw read of the same events", ">= 0.5",
                    built / raw >= 0.5, events=size)
            without, with_tree = appends_with_tree(app, url, asset_id)
            measure("proofs_append_with_tree", with_tree, "transfers/s", without,
                    "the same 16 clients with no tree kept", ">= 0.9", with_tree / without >= 0.9)
            size = app.transparency.extend()
        finally:
            app.close()
        key = KeyStore(bootstrap.read_engine(Settings(database_url=url))).create("auditor")
        rng = random.Random(7)
        with served(log, url, "--no-projector") as (_, port):
            health = latencies(port, key, ["/healthz"] * REQUESTS)
            inclusion = latencies(port, key, [
                f"/v1/audit/proofs/inclusion?position={rng.randint(1, size)}&tree_size={size}"
                for _ in range(REQUESTS)
            ])
            consistency = latencies(port, key, [
                f"/v1/audit/proofs/consistency?from_size={rng.randint(1, size)}&to_size={size}"
                for _ in range(REQUESTS)
            ])
        base = percentile(health, 95)
        for name, sample in (("inclusion", inclusion), ("consistency", consistency)):
            p95 = percentile(sample, 95)
            measure(f"proofs_{name}_p95", p95, "ms", base, "GET /healthz p95, same connection", "<= 5 ms",
                    p95 <= 5.0, {"p50_ms": round(statistics.median(sample), 3)} if explain else None,
                    tree_size=size)
    log(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
