"""Append benchmark (SPEC section 8): transfers committed per second and command latency.

Run from the repository root: `.venv/bin/python bench/append.py`.

Everything runs in one fresh PostgreSQL schema (dropped at the end) of the database
named by `LEDGER_BENCH_DATABASE_URL` (default: the test database). It sets up one
asset and `BENCH_INVESTORS` onboarded investors holding tokens, then measures:

- `append_16_clients`: transfers/s committed by 16 threads sharing one
  `LedgerApplication` (all rules, hash chain, an Idempotency-Key on every transfer),
  against a raw psycopg `executemany` of 1000-row batches of the same event row
  into a plain table (one commit per batch), in rows/s;
- `append_1_client`: the same with one thread, against sequential raw single-row
  INSERT+COMMITs per second;
- `append_p50_latency` / `append_p99_latency`: one client's transfer latency,
  against the latency of one raw single-row INSERT+COMMIT;
- `append_64_clients` (informational, no target): the 16-client measure with 64
  threads, one round.

With 16 clients each waiting for its own commit, at most 16 transfers are in flight:
by Little's law no implementation exceeds 16 / (its latency) transfers per second,
and its latency is at least one commit. `append_16_clients` reports that ceiling
(16 / raw single-commit p50) and its ratio to the batched baseline, to show how
much of the target the measure itself allows.

The measures run in `BENCH_ROUNDS` rounds (default 2) of `BENCH_SECONDS` each, every
baseline right before the measure it is compared with; rounds are pooled.

stdout carries one JSON object per measure and nothing else; progress goes to stderr.
A last 16-client run, not counted, writes a cProfile (wall clock) of the leader's batch
processing (`GroupCommitter._run_batch`, merged over all threads) to `BENCH_PROFILE`
and a text summary next to it.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from common import PG_URL, emit, logger, percentile, scratch_schema, with_schema

# isort: split
# (`common` has put the repository on the import path)
from tests.support import holding, onboard, open_asset

from ledger.application import LedgerApplication
from ledger.commit import GroupCommitter, _Pending
from ledger.config import store_env
from ledger.errors import LedgerError

INVESTORS = int(os.environ.get("BENCH_INVESTORS", "200"))
HOLDING = 1_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
DURATION = float(os.environ.get("BENCH_SECONDS", "3"))  # per round
PROFILE_DURATION = float(os.environ.get("BENCH_PROFILE_SECONDS", "4"))
CLIENTS = 16
WIDE_CLIENTS = 64  # informational: a wider offered load than the target's
SETUP_THREADS = 16
RAW_BATCH = 1000
RAW_BATCH_SECONDS = 2.0  # per round
RAW_SINGLE_SECONDS = 1.5  # per round
PROFILE_PATH = Path(os.environ.get("BENCH_PROFILE", "/tmp/ledger_append_16_clients.prof"))

TARGET_16_CLIENTS = 0.35  # transfers/s >= 0.35 x raw batched rows/s
TARGET_P50 = 2.0  # p50 latency <= 2 x raw single-row INSERT+COMMIT p50

log = logger("append")


# ----- setup -----


def investor_name(index: int) -> str:
    return f"inv-{index:05d}"


def set_up(app: LedgerApplication) -> tuple[str, list[str]]:
    started = time.perf_counter()
    asset_id = open_asset(app, authorized_supply=10 * INVESTORS * HOLDING)
    investors = [investor_name(i) for i in range(INVESTORS)]

    def one(investor_id: str) -> None:
        onboard(app, investor_id)
        holding(app, asset_id, investor_id, HOLDING)

    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        list(pool.map(one, investors))
    balances = app.get_asset(asset_id).balances
    assert all(balances.get(i) == HOLDING for i in investors), "setup did not fund every investor"
    log(f"set up 1 asset and {INVESTORS} investors in {time.perf_counter() - started:.1f}s")
    return asset_id, investors


# ----- the ledger's append path -----


@dataclass
class BatchStats:
    """Batches the group committer ran (sizes), recorded by a thin wrapper on the instance."""

    sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunResult:
    clients: int
    committed: int
    rejected: int
    failed: int
    elapsed: float
    cpu: float
    latencies_ms: list[float]
    batches: BatchStats
    events: int

    @property
    def rate(self) -> float:
        return self.committed / self.elapsed


def instrument(
    committer: GroupCommitter, profiles: dict[int, cProfile.Profile] | None
) -> BatchStats:
    """Wraps the instance's `_run_batch` to count batch sizes (and profile them, if asked)."""
    stats = BatchStats()
    original: Callable[[list[_Pending]], None] = committer._run_batch

    def run_batch(batch: list[_Pending]) -> None:
        stats.sizes.append(len(batch))
        started = time.perf_counter()
        if profiles is None:
            original(batch)
        else:
            profile = profiles.setdefault(threading.get_ident(), cProfile.Profile())
            profile.enable()
            try:
                original(batch)
            finally:
                profile.disable()
        stats.seconds += time.perf_counter() - started

    committer._run_batch = run_batch  # type: ignore[method-assign]
    return stats


def uninstrument(committer: GroupCommitter) -> None:
    committer.__dict__.pop("_run_batch", None)


def run_transfers(
    app: LedgerApplication,
    asset_id: str,
    investors: list[str],
    clients: int,
    duration: float,
    label: str,
    profiles: dict[int, cProfile.Profile] | None = None,
) -> RunResult:
    """`clients` threads doing random valid transfers for `duration` seconds."""
    head_before = app.admin.head_position()
    run_id = uuid.uuid4().hex[:8]  # fresh keys every run: a repeated key would only replay
    stats = instrument(app.committer, profiles)
    barrier = threading.Barrier(clients + 1)
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"committed": 0, "rejected": 0, "failed": 0}
    deadline = [0.0]

    def client(number: int) -> None:
        rng = random.Random(f"{label}-{number}")
        mine: list[float] = []
        committed = rejected = failed = 0
        barrier.wait()
        sequence = 0
        while time.perf_counter() < deadline[0]:
            sender, receiver = rng.sample(investors, 2)
            key = f"{label}-{run_id}-{number}-{sequence}"
            sequence += 1
            started = time.perf_counter()
            try:
                app.transfer(asset_id, sender, receiver, rng.randint(1, 3), idempotency_key=key)
            except LedgerError:
                rejected += 1
                continue
            except Exception as error:  # reported in the JSON, never hidden
                failed += 1
                log(f"{label}: transfer failed: {error!r}")
                continue
            mine.append((time.perf_counter() - started) * 1000)
            committed += 1
        with lock:
            latencies.extend(mine)
            counts["committed"] += committed
            counts["rejected"] += rejected
            counts["failed"] += failed

    threads = [
        threading.Thread(target=client, args=(n,), name=f"{label}-{n}") for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline[0] = started + duration
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    uninstrument(app.committer)
    events = app.admin.head_position() - head_before
    result = RunResult(
        clients=clients,
        committed=counts["committed"],
        rejected=counts["rejected"],
        failed=counts["failed"],
        elapsed=elapsed,
        cpu=cpu,
        latencies_ms=latencies,
        batches=stats,
        events=events,
    )
    log(
        f"{label}: {result.committed} transfers in {elapsed:.2f}s = {result.rate:.0f}/s "
        f"({len(stats.sizes)} batches, mean {statistics.fmean(stats.sizes or [0]):.1f}, "
        f"rejected {result.rejected}, failed {result.failed})"
    )
    return result


# ----- raw psycopg baselines -----


def template_row(schema: str) -> tuple[uuid.UUID, int, str, bytes]:
    with psycopg.connect(PG_URL) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}.ledger_events "
                "WHERE topic LIKE %s ORDER BY notification_id DESC LIMIT 1"
            ).format(sql.Identifier(schema)),
            ("%TokensTransferred",),
        ).fetchone()
    assert row is not None, "no stored transfer event to copy"
    return row[0], int(row[1]), str(row[2]), bytes(row[3])


class RawTable:
    """A plain scratch table with the stored event row's columns, and a source of distinct rows."""

    def __init__(self, schema: str, template: tuple[uuid.UUID, int, str, bytes]) -> None:
        self.table = sql.SQL("{}.{}").format(
            sql.Identifier(schema), sql.Identifier("bench_raw_events")
        )
        self.insert = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        ).format(self.table)
        self.originator_id, self.version, self.topic, self.state = template
        self._next = 0
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (originator_id uuid NOT NULL, "
                    "originator_version bigint NOT NULL, topic text, state bytea)"
                ).format(self.table)
            )

    def rows(self, count: int) -> list[tuple[uuid.UUID, int, str, bytes]]:
        start = self._next
        self._next += count
        return [(self.originator_id, start + i, self.topic, self.state) for i in range(count)]


def raw_batched(raw: RawTable, seconds: float) -> tuple[int, float]:
    """executemany of 1000-row batches, one commit per batch: (rows, seconds)."""
    with psycopg.connect(PG_URL) as conn:
        with conn.cursor() as cur:  # warm-up batch, not timed
            cur.executemany(raw.insert, raw.rows(RAW_BATCH))
        conn.commit()
        batches = 0
        started = time.perf_counter()
        while True:
            rows = raw.rows(RAW_BATCH)
            with conn.cursor() as cur:
                cur.executemany(raw.insert, rows)
            conn.commit()
            batches += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and batches >= 3:
                break
    log(
        f"raw executemany: {batches} x {RAW_BATCH} rows in {elapsed:.2f}s"
        f" = {batches * RAW_BATCH / elapsed:.0f} rows/s"
    )
    return batches * RAW_BATCH, elapsed


def raw_single(raw: RawTable, seconds: float) -> list[float]:
    """One-row INSERT then COMMIT, one after the other: latencies in ms."""
    latencies: list[float] = []
    with psycopg.connect(PG_URL) as conn:
        for row in raw.rows(20):  # warm-up
            conn.execute(raw.insert, row, prepare=True)
            conn.commit()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 100:
            row = raw.rows(1)[0]
            started = time.perf_counter()
            conn.execute(raw.insert, row, prepare=True)
            conn.commit()
            latencies.append((time.perf_counter() - started) * 1000)
    log(
        f"raw single INSERT+COMMIT: {len(latencies)} in {sum(latencies) / 1000:.2f}s, "
        f"p50 {statistics.median(latencies):.3f} ms, p99 {percentile(latencies, 99):.3f} ms"
    )
    return latencies


def merge(results: list[RunResult]) -> RunResult:
    """The rounds of one measure as one run: counts and times added, samples pooled."""
    return RunResult(
        clients=results[0].clients,
        committed=sum(r.committed for r in results),
        rejected=sum(r.rejected for r in results),
        failed=sum(r.failed for r in results),
        elapsed=sum(r.elapsed for r in results),
        cpu=sum(r.cpu for r in results),
        latencies_ms=[x for r in results for x in r.latencies_ms],
        batches=BatchStats(
            sizes=[x for r in results for x in r.batches.sizes],
            seconds=sum(r.batches.seconds for r in results),
        ),
        events=sum(r.events for r in results),
    )


# ----- profile -----


def profile_summary(profiles: dict[int, cProfile.Profile], result: RunResult) -> str:
    """Merges the per-thread profiles of `_run_batch`, writes them out, returns a short summary."""
    assert profiles, "no batch was profiled"
    first, *rest = profiles.values()
    merged = pstats.Stats(first)
    for profile in rest:
        merged.add(profile)
    merged.dump_stats(str(PROFILE_PATH))
    sizes = result.batches.sizes
    header = (
        f"{result.committed} transfers, {len(sizes)} batches (mean {statistics.fmean(sizes):.2f}),"
        f" leader wall time in _run_batch {result.batches.seconds:.3f}s of {result.elapsed:.3f}s"
        f" ({1000 * result.batches.seconds / len(sizes):.2f} ms/batch, profiler on)\n"
    )
    texts = []
    for limit_tottime, limit_cumulative in ((60, 80), (20, 30)):
        out = io.StringIO()
        out.write(header)
        merged.stream = out  # type: ignore[attr-defined]
        merged.sort_stats("tottime").print_stats(limit_tottime)
        merged.sort_stats("cumulative").print_stats(limit_cumulative)
        texts.append(out.getvalue())
    PROFILE_PATH.with_suffix(".txt").write_text(texts[0])
    return texts[1]


# ----- main -----


def checkpoint() -> None:
    """Starts each measured phase from a clean WAL state, so a checkpoint does not land mid-run."""
    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as error:  # not allowed for this role: measure anyway
        log(f"CHECKPOINT skipped: {error}")


def ledger_extra(result: RunResult, rounds: int = ROUNDS) -> dict[str, Any]:
    sizes = result.batches.sizes or [0]
    return {
        "rounds": rounds,
        "clients": result.clients,
        "transfers": result.committed,
        "rejected": result.rejected,
        "failed": result.failed,
        "seconds": round(result.elapsed, 3),
        "events_per_transfer": round(result.events / max(result.committed, 1), 3),
        "batches": len(result.batches.sizes),
        "mean_batch": round(statistics.fmean(sizes), 2),
        "max_batch": max(sizes),
        "leader_busy_fraction": round(result.batches.seconds / result.elapsed, 3),
        "cpu_ms_per_transfer": round(1000 * result.cpu / max(result.committed, 1), 3),
        "latency_p50_ms": round(statistics.median(result.latencies_ms or [0.0]), 3),
        "latency_p99_ms": round(percentile(result.latencies_ms or [0.0], 99), 3),
    }


def main() -> None:
    overall = time.perf_counter()
    with scratch_schema(log) as schema:
        app = LedgerApplication(store_env(with_schema(PG_URL, schema)))
        try:
            asset_id, investors = set_up(app)
            # Warm the aggregate cache, prepared statements and connection pool.
            run_transfers(app, asset_id, investors, CLIENTS, 1.0, "warmup")
            raw = RawTable(schema, template_row(schema))

            # Rounds alternate each baseline with the measure it is compared with, so
            # a slow spell of the machine (fsync, neighbours) weighs on both alike.
            singles: list[float] = []
            ones: list[RunResult] = []
            batched_rows, batched_seconds = 0, 0.0
            manys: list[RunResult] = []
            for number in range(1, ROUNDS + 1):
                log(f"round {number} of {ROUNDS}")
                checkpoint()
                singles += raw_single(raw, RAW_SINGLE_SECONDS)
                checkpoint()
                ones.append(run_transfers(app, asset_id, investors, 1, DURATION, "one-client"))
                checkpoint()
                rows, seconds = raw_batched(raw, RAW_BATCH_SECONDS)
                batched_rows, batched_seconds = batched_rows + rows, batched_seconds + seconds
                checkpoint()
                manys.append(
                    run_transfers(app, asset_id, investors, CLIENTS, DURATION, "sixteen-clients")
                )
            one, many = merge(ones), merge(manys)
            checkpoint()
            wide = run_transfers(app, asset_id, investors, WIDE_CLIENTS, DURATION, "wide")

            checkpoint()
            profiles: dict[int, cProfile.Profile] = {}
            profiled = run_transfers(
                app, asset_id, investors, CLIENTS, PROFILE_DURATION, "profiled", profiles
            )
            summary = profile_summary(profiles, profiled)
            log(f"profile: {PROFILE_PATH} (pstats), {PROFILE_PATH.with_suffix('.txt')} (text)")
            log("leader's batch processing, 16 clients:\n" + summary)

            verified = app.admin.verify()
            assert verified.ok, f"hash chain does not verify: {verified.reason}"
            log(f"hash chain verified over {verified.events_checked} events")
        finally:
            app.close()

    batched_rate = batched_rows / batched_seconds
    single_p50, single_p99 = statistics.median(singles), percentile(singles, 99)
    single_rate = len(singles) / (sum(singles) / 1000)
    ratio16 = many.rate / batched_rate
    # Each client waits for its transfer to be durable before it sends the next, so at
    # most CLIENTS transfers are ever in flight: by Little's law no ledger commits more
    # than CLIENTS / (its latency) per second, and no latency is below one raw commit.
    ceiling = CLIENTS / (single_p50 / 1000)
    emit({
        "name": "append_16_clients",
        "value": round(many.rate, 1),
        "unit": "transfers/s",
        "baseline": round(batched_rate, 1),
        "baseline_unit": "rows/s",
        "baseline_name": f"raw psycopg executemany, {RAW_BATCH}-row batches, one commit each",
        "ratio": round(ratio16, 4),
        "target": f">= {TARGET_16_CLIENTS}",
        "pass": ratio16 >= TARGET_16_CLIENTS,
        "state_bytes": len(raw.state),
        "closed_loop_ceiling": round(ceiling, 1),
        "closed_loop_ceiling_ratio": round(ceiling / batched_rate, 4),
        "closed_loop_ceiling_note": (
            f"{CLIENTS} clients each waiting for its commit: at most {CLIENTS} transfers in flight, "
            "so even a ledger whose every transfer took just one raw single-row commit could not "
            f"pass {CLIENTS} / raw single-commit p50 per second"
        ),
        "share_of_ceiling": round(many.rate / ceiling, 4),
        **ledger_extra(many),
    })
    ratio_wide = wide.rate / batched_rate
    emit({
        "name": f"append_{WIDE_CLIENTS}_clients",
        "value": round(wide.rate, 1),
        "unit": "transfers/s",
        "baseline": round(batched_rate, 1),
        "baseline_unit": "rows/s",
        "baseline_name": f"raw psycopg executemany, {RAW_BATCH}-row batches, one commit each",
        "ratio": round(ratio_wide, 4),
        "target": None,
        "pass": None,
        "note": "more clients in flight, so larger group commits: how the committer scales",
        **ledger_extra(wide, rounds=1),
    })
    ratio1 = one.rate / single_rate
    emit({
        "name": "append_1_client",
        "value": round(one.rate, 1),
        "unit": "transfers/s",
        "baseline": round(single_rate, 1),
        "baseline_unit": "rows/s",
        "baseline_name": "raw single-row INSERT+COMMIT, one after the other",
        "ratio": round(ratio1, 4),
        "target": None,
        "pass": None,
        **ledger_extra(one),
    })
    p50 = statistics.median(one.latencies_ms)
    ratio_p50 = p50 / single_p50
    emit({
        "name": "append_p50_latency",
        "value": round(p50, 3),
        "unit": "ms",
        "baseline": round(single_p50, 3),
        "baseline_name": "raw single-row INSERT+COMMIT p50",
        "ratio": round(ratio_p50, 3),
        "target": f"<= {TARGET_P50}",
        "pass": ratio_p50 <= TARGET_P50,
        "samples": len(one.latencies_ms),
        "baseline_samples": len(singles),
    })
    p99 = percentile(one.latencies_ms, 99)
    emit({
        "name": "append_p99_latency",
        "value": round(p99, 3),
        "unit": "ms",
        "baseline": round(single_p99, 3),
        "baseline_name": "raw single-row INSERT+COMMIT p99",
        "ratio": round(p99 / single_p99, 3),
        "target": None,
        "pass": None,
        "samples": len(one.latencies_ms),
        "baseline_samples": len(singles),
    })
    log(f"done in {time.perf_counter() - overall:.1f}s")


if __name__ == "__main__":
    main()
