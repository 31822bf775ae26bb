"""Cold-start benchmark (SPEC sections 8 and 9): the first command on a long-lived asset.

Run from the repository root: `.venv/bin/python bench/coldstart.py [--explain]`.

One fresh PostgreSQL schema (dropped at the end) gets an asset whose stream holds
`BENCH_COLD_EVENTS` (default 1,000,000) transfers between two investors, appended as the
committer appends them (hash chain included) and snapshotted by the committer's own rule
(`ledger.snapshots`, every `SNAPSHOT_EVERY` versions). Then a new `LedgerApplication` (a
restarted process: empty cache) makes one transfer on that asset.

- `cold_start_first_command`: that first transfer's latency, against the same first
  transfer on a fresh asset with a history of a few events, in a restarted application
  too. Target: under 500 ms (SPEC 9).

`--explain` adds the events the first command read, the snapshot interval and the time the
history took to build. stdout carries one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from common import PG_URL, arguments, logger, measure, scratch_schema, timed, with_schema

# isort: split
from tests.support import holding, onboard, open_asset

from ledger import snapshots
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.asset import Asset

EVENTS = int(os.environ.get("BENCH_COLD_EVENTS", "1000000"))
CHUNK = 20_000
TARGET_MS = 500.0
log = logger("coldstart")


def build_history(app: LedgerApplication, asset_id: str, events: int = EVENTS) -> Asset:
    """`events` forced transfers of one token back and forth between alice and bob, appended
    in chunks (hash chain included), snapshotted as the committer snapshots."""
    asset = app.get_asset(asset_id)
    started, written = time.perf_counter(), 0
    while written < events:
        batch = min(CHUNK, events - written)
        before = asset.version
        for n in range(batch):
            sender, receiver = ("alice", "bob") if (written + n) % 2 == 0 else ("bob", "alice")
            asset.force_transfer(sender, receiver, 1)
        new = asset.collect_events()
        app.recorder.insert_events([app.mapper.to_stored_event(e) for e in new])
        if snapshots.due(before, asset.version):
            snapshots.take(app, asset)
        written += batch
        if written % 200_000 == 0:
            log(f"{written} events in {time.perf_counter() - started:.0f}s")
    return asset


def first_command(url: str, asset_id: str) -> tuple[float, int]:
    """The latency (ms) of the first transfer of a restarted application, and the events it read."""
    app = LedgerApplication(store_env(url))
    read = [0]
    original = app.events.get

    def counting(*args: Any, **kwargs: Any) -> Any:
        for event in original(*args, **kwargs):
            read[0] += 1
            yield event

    app.events.get = counting  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        app.transfer(asset_id, "alice", "bob", 1, forced=True)
        return (time.perf_counter() - started) * 1000, read[0]
    finally:
        app.close()


def main() -> None:
    explain = arguments(__doc__).explain
    with scratch_schema(log) as schema:
        url = with_schema(PG_URL, schema)
        app = LedgerApplication(store_env(url))
        try:
            long_lived = open_asset(app, asset_id="TOLL-LONG-01")
            short_lived = open_asset(app, asset_id="TOLL-NEW-01")
            for investor_id in ("alice", "bob"):
                onboard(app, investor_id)
            for asset_id in (long_lived, short_lived):
                holding(app, asset_id, "alice", 10)
            asset, build_seconds = timed(lambda: build_history(app, long_lived))
            version = asset.version
            log(f"history of {version} versions built in {build_seconds:.0f}s")
        finally:
            app.close()
        baseline_ms, _ = first_command(url, short_lived)
        value_ms, read = first_command(url, long_lived)
        measure(
            "cold_start_first_command", value_ms, "ms", baseline_ms,
            "the same first command on an asset with a short history", f"< {TARGET_MS} ms",
            value_ms < TARGET_MS,
            {"events_read": read, "snapshot_every": snapshots.SNAPSHOT_EVERY,
             "build_seconds": round(build_seconds, 1), "at": datetime.now(tz=UTC).isoformat()}
            if explain else None,
            history_events=version,
        )


if __name__ == "__main__":
    main()
