"""The benchmarks' harness: the import path, the database and a scratch schema, a history of
events appended in batches, the served API, timing, percentiles and the JSON line of a measure.

A benchmark prints one JSON line per measure on stdout (`measure`) and its progress on stderr
(`logger`); `--explain` (`arguments`) adds the diagnostics a reader does not need to judge the
figure against its target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "src", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

PG_URL = os.environ.get("LEDGER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEEP_SCHEMA = os.environ.get("BENCH_KEEP_SCHEMA") == "1"
PUT_BATCH = int(os.environ.get("BENCH_PUT_BATCH", "5000"))
HOST = "127.0.0.1"


def arguments(doc: str, *flags: tuple[str, str]) -> argparse.Namespace:
    """The command line of a benchmark: `--explain` and its own flags, (name, help) each."""
    parser = argparse.ArgumentParser(description=doc.split("\n", maxsplit=1)[0])
    parser.add_argument("--explain", action="store_true", help="diagnostics beside each figure")
    for flag, text in flags:
        parser.add_argument(flag, action="store_true", help=text)
    return parser.parse_args()


def logger(name: str) -> Callable[[str], None]:
    """Progress on stderr, prefixed with the benchmark's name (stdout carries only JSON)."""

    def log(message: str) -> None:
        print(f"[bench/{name}] {message}", file=sys.stderr, flush=True)

    return log


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def measure(
    name: str, value: float, unit: str, baseline: float | None, baseline_name: str | None,
    target: str | None, passed: bool | None, explain: dict[str, Any] | None = None, **extra: Any,
) -> None:
    """One measure's JSON line: the figure, its baseline and their ratio, the target and whether
    it is met, what a reader needs besides (`extra`), then the diagnostics (`explain`, only
    under `--explain`)."""
    ratio = round(value / baseline, 3) if baseline else None
    emit({
        "name": name, "value": round(value, 3), "unit": unit,
        "baseline": None if baseline is None else round(baseline, 3), "baseline_name": baseline_name,
        "ratio": ratio, "target": target, "pass": passed, **extra, **(explain or {}),
    })


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    """What `action` returns, and the seconds it took."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@contextmanager
def scratch_schema(
    log: Callable[[str], None], *, prefix: str = "bench_", digits: int = 12, keep: bool = KEEP_SCHEMA
) -> Iterator[str]:
    """A fresh schema of the benchmark database (`prefix` and `digits` random hex digits), dropped
    afterwards whatever happens, unless `keep` (`BENCH_KEEP_SCHEMA=1`)."""
    schema = f"{prefix}{uuid.uuid4().hex[:digits]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    log(f"schema {schema} created")
    try:
        yield schema
    finally:
        if keep:
            log(f"schema {schema} kept (BENCH_KEEP_SCHEMA=1)")
        else:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            log(f"schema {schema} dropped")


def analyze(schema: str) -> int:
    """`ANALYZE` of every table of `schema` (what autovacuum would soon do); the tables' count."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        ).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
    return len(tables)


class EventBatches:
    """A history made by driving the aggregates' own command methods in memory (every rule is
    checked, as in the application): each command's new events are collected from the aggregates
    it touched, in the order the application's unit of work would, and appended with those of
    the commands before it (`app.events.put`: the real recorder, its lock and hash chain) once
    `PUT_BATCH` events are waiting; a command is never split."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.buffer: list[Any] = []
        self.events = 0  # collected so far
        self.head = 0  # the position of the last event appended
        self.kinds: Counter[str] = Counter()  # commands by kind
        self.rejected = 0  # commands a rule rejected

    def commit(self, kind: str, *aggregates: Any) -> None:
        """One command's new events, in the order of the aggregates it touched."""
        self.record(kind, [event for aggregate in aggregates for event in aggregate.collect_events()])

    def record(self, kind: str, events: list[Any]) -> None:
        """One command's events (or a fact's, made without an aggregate)."""
        assert events, f"{kind} recorded nothing"
        self.buffer.extend(events)
        self.events += len(events)
        self.kinds[kind] += 1
        if len(self.buffer) >= PUT_BATCH:
            self.flush()

    def attempt(self, kind: str, command: Callable[[], tuple[Any, ...]]) -> bool:
        """Runs one command (returning the aggregates it touched); a rule's rejection records
        nothing, as in the application."""
        from ledger.errors import LedgerError

        try:
            touched = command()
        except LedgerError:
            self.rejected += 1
            return False
        self.commit(kind, *touched)
        return True

    def flush(self) -> None:
        if self.buffer:
            self.append(self.buffer)
            self.buffer = []

    def append(self, events: list[Any]) -> None:
        self.head = self.app.events.put(events)[-1].notification.id


def offered_amount(asset: Any, quantity: int, rng: Any) -> int:
    """What an investor offers for `quantity` base units: their price rounded up, plus a random
    part of one whole token's price (the asset accepts what buys whole base units)."""
    scale = 10**asset.decimals
    return -(-quantity * asset.unit_price // scale) + rng.randrange(max(1, asset.unit_price // scale))


def place_investment(asset: Any, investor_id: str, eligible: bool, amount: int) -> tuple[Any, Any]:
    """The application's `place_investment` on in-memory aggregates: the purchase checked by the
    asset's rules, the investment placed and the supply reserved; the investment and the purchase."""
    from ledger.domain.investment import Investment

    purchase = asset.check_investment(investor_id, eligible, amount)
    investment = Investment.place(investor_id, asset.asset_id, amount, purchase)
    asset.reserve(investment.id, investor_id, purchase.quantity)
    return investment, purchase


def random_investor(rng: Any, number: int, accredited_share: float) -> tuple[Any, Any]:
    """Investor `inv-<number>` registered (most in ID, some in SG, MY, AU; `accredited_share` of
    them accredited) with a random wallet: its wallet claim and the investor."""
    from ledger.domain import values as v
    from ledger.domain.investor import Investor, WalletClaim
    from ledger.domain.terms import InvestorRegistration

    investor_id = f"inv-{number:06d}"
    roll = rng.random()
    country = "ID" if roll < 0.85 else "SG" if roll < 0.93 else "MY" if roll < 0.97 else "AU"
    wallet = v.wallet("0x" + uuid.UUID(int=rng.getrandbits(128)).hex + f"{number:08x}")
    registration = InvestorRegistration(investor_id, country, wallet, rng.random() < accredited_share)
    return WalletClaim.claim(wallet, investor_id), Investor.register(registration)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def ledger_command() -> list[str]:
    script = Path(sys.executable).parent / "ledger"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from adapters.cli import main; main()"]


def http_get(port: int, path: str, key: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def served(
    log: Callable[[str], None], url: str, *options: str, quiet: bool = False, start_seconds: float = 60
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`ledger serve` (with `options`) on the store at `url`, in a process of its own on a free
    port of loopback, once it answers `/healthz`; stopped with SIGTERM afterwards. Its output
    goes to stderr (nowhere if `quiet`)."""
    port = free_port()
    env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_READ_DATABASE_URL": url}
    command = [*ledger_command(), "serve", *options, "--host", HOST, "--port", str(port)]
    log(f"starting: {' '.join(command)} (LEDGER_DATABASE_URL={url})")
    output = subprocess.DEVNULL if quiet else sys.stderr
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            if process.poll() is not None:
                msg = f"the server exited with code {process.returncode} before it answered"
                raise RuntimeError(msg)
            try:
                if http_get(port, "/healthz", None)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                msg = f"the server did not answer /healthz within {start_seconds:.0f} s"
                raise RuntimeError(msg)
            time.sleep(0.1)
        log(f"server pid {process.pid} listening on {HOST}:{port}")
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log(f"server stopped (exit code {process.returncode})")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: per address space, so not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def source_state() -> dict[str, Any]:
    """The commit measured and whether src/ or migrations/ differ from it (others may be editing)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "src_dirty": bool(git("status", "--porcelain", "--", "src", "migrations")),
    }
