"""Append benchmark (SPEC section 8): transfers committed per second, and command latency.

Run from the repository root: `.venv/bin/python bench/append.py [--explain]`.

One fresh PostgreSQL schema (dropped at the end) holds one asset and `BENCH_INVESTORS`
funded investors; every transfer is a random valid one between two of them, with all
rules, the hash chain and an Idempotency-Key. Measures and targets:

- `append_16_clients`, `append_64_clients`: transfers/s of 16 (64) client threads on one
  `LedgerApplication`, against a pgledger-style SQL ledger driven by as many client
  connections in the same run: a plpgsql `transfer(from, to, amount)` that locks both
  balance rows in id order (`SELECT ... FOR UPDATE`), checks the balance, updates both
  rows and inserts a transfer row and two entry rows, one transaction per call. Target
  >= 1.0 x (the SQL ledger checks one rule and chains no hashes: a floor, not a ceiling).
- `append_p50_latency`: one client's transfer p50, against one raw single-row
  INSERT+COMMIT p50. Target <= 2.0 x.
- `append_2_processes`, `append_4_processes`: 2 (4) processes of 8 clients each, each
  process with its own `LedgerApplication` on the one store (as API processes behind a
  load balancer), all on the one asset, against one such process alone. Target >= 0.9 x
  (adding processes must not slow the register down), and no valid transfer rejected
  (`conflicts` == 0).

- `append_http_workers_2` (with `--http`): POST /v1/transfers (an Idempotency-Key each) from
  16 keep-alive connections against `ledger serve --workers 2` (projection runner on, as
  deployed), against GET /healthz of the same server the same way. Target >= 0.6 x.

Every baseline runs right before the measure it is compared with. `--explain` adds
latency percentiles, CPU per transfer and counts to each line; to `append_16_clients`, the
SQL ledger's rate with its transfers made one at a time (a global lock first: the serial
commits a total order has); to the HTTP line, the CPU milliseconds per request of each role
(API workers, the supervising process with the projection runner, PostgreSQL, the load) for
both kinds of request. stdout carries one JSON object per measure and nothing else; progress
goes to stderr.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from common import PG_URL, arguments, logger, measure, percentile, scratch_schema, served, with_schema

# isort: split
# (`common` has put the repository on the import path)
from tests.support import holding, onboard, open_asset

from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import ConcurrencyError, LedgerError

INVESTORS = 200
HOLDING = 1_000
SECONDS = 3.0
WARM_UP_SECONDS = 1.0
CLIENTS = 16
WIDE_CLIENTS = 64
PROCESS_CLIENTS = 8
TARGET_SQL_LEDGER = 1.0
TARGET_P50 = 2.0
TARGET_PROCESSES = 0.9
TARGET_HTTP = 0.6
log = logger("append")


@dataclass
class Run:
    """What a set of clients did for `seconds`."""

    clients: int
    committed: int = 0
    rejected: int = 0  # by a rule (e.g. insufficient balance): a valid outcome
    conflicts: int = 0  # ConcurrencyError: a valid command the ledger gave up on
    failed: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.committed / self.seconds

    def add(self, other: Run) -> None:
        self.committed += other.committed
        self.rejected += other.rejected
        self.conflicts += other.conflicts
        self.failed += other.failed
        self.cpu += other.cpu
        self.latencies_ms += other.latencies_ms

    def explained(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "transfers": self.committed,
            "rejected_by_rules": self.rejected,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "cpu_ms_per_transfer": round(1000 * self.cpu / max(self.committed, 1), 3),
            "latency_p50_ms": round(statistics.median(self.latencies_ms or [0.0]), 3),
            "latency_p99_ms": round(percentile(self.latencies_ms or [0.0], 99), 3),
        }


def investor_name(index: int) -> str:
    return f"inv-{index:05d}"


def set_up(app: LedgerApplication) -> str:
    asset_id = open_asset(app, authorized_supply=10 * INVESTORS * HOLDING)
    for index in range(INVESTORS):
        onboard(app, investor_name(index))
        holding(app, asset_id, investor_name(index), HOLDING)
    return asset_id


def clients_for(
    seconds: float, clients: int, label: str, transfer: Callable[[random.Random, str], None]
) -> Run:
    """`clients` threads each calling `transfer(rng, key)` in a loop for `seconds`."""
    run = Run(clients)
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(number: int) -> None:
        rng = random.Random(f"{label}-{number}")
        mine = Run(clients)
        barrier.wait()
        sequence = 0
        while time.perf_counter() < deadline[0]:
            sequence += 1
            started = time.perf_counter()
            try:
                transfer(rng, f"{label}-{number}-{sequence}")
            except ConcurrencyError:
                mine.conflicts += 1
                continue
            except LedgerError:
                mine.rejected += 1
                continue
            except Exception as error:  # reported in the JSON, never hidden
                mine.failed += 1
                log(f"{label}: transfer failed: {error!r}")
                continue
            mine.latencies_ms.append((time.perf_counter() - started) * 1000)
            mine.committed += 1
        with lock:
            run.add(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    cpu = time.process_time()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    run.cpu = time.process_time() - cpu
    log(f"{label}: {run.committed} in {run.seconds:.2f}s = {run.rate:.0f}/s "
        f"(rejected {run.rejected}, conflicts {run.conflicts}, failed {run.failed})")
    return run


def ledger_transfers(app: LedgerApplication, asset_id: str, seconds: float, clients: int, label: str) -> Run:
    run_id = uuid.uuid4().hex[:8]  # fresh idempotency keys: a repeated key would only replay

    def transfer(rng: random.Random, key: str) -> None:
        sender, receiver = rng.sample(range(INVESTORS), 2)
        app.transfer(
            asset_id, investor_name(sender), investor_name(receiver), rng.randint(1, 3),
            idempotency_key=f"{run_id}-{key}",
        )

    return clients_for(seconds, clients, label, transfer)


# ----- several processes on one store -----


def _process(url: str, asset_id: str, clients: int, ready: Any, go: Any, out: Any) -> None:
    app = LedgerApplication(store_env(url))
    try:
        # Warmed up before the clock starts, as the one-process run before it was: the asset
        # and the investors in the cache (without it, each process's first 200 loads fall in
        # the measure, in the writer lock).
        ledger_transfers(app, asset_id, WARM_UP_SECONDS, clients, f"warm-up-{uuid.uuid4().hex[:6]}")
        ready.put(True)
        go.wait()
        out.put(asdict(ledger_transfers(app, asset_id, SECONDS, clients, f"proc-{uuid.uuid4().hex[:6]}")))
    finally:
        app.close()


def processes_transfers(url: str, asset_id: str, processes: int) -> Run:
    context = multiprocessing.get_context("spawn")
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    workers = [
        context.Process(target=_process, args=(url, asset_id, PROCESS_CLIENTS, ready, go, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    go.set()
    total = Run(PROCESS_CLIENTS * processes)
    for _ in workers:
        part = Run(**out.get(timeout=120))
        total.add(part)
        total.seconds = max(total.seconds, part.seconds)
    for worker in workers:
        worker.join()
    log(f"{processes} processes: {total.committed} in {total.seconds:.2f}s = {total.rate:.0f}/s "
        f"(conflicts {total.conflicts}, failed {total.failed})")
    return total


# ----- baselines -----

SQL_LEDGER = """
CREATE TABLE {s}.accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE {s}.transfers (id bigserial PRIMARY KEY, from_id bigint NOT NULL, to_id bigint NOT NULL,
    amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE {s}.entries (id bigserial PRIMARY KEY, transfer_id bigint NOT NULL,
    account_id bigint NOT NULL, amount bigint NOT NULL);
CREATE FUNCTION {s}.transfer(from_id bigint, to_id bigint, amount bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    available bigint;
    transfer_id bigint;
BEGIN
    PERFORM 1 FROM {s}.accounts WHERE id IN (from_id, to_id) ORDER BY id FOR UPDATE;
    SELECT balance INTO available FROM {s}.accounts WHERE id = from_id;
    IF available < amount THEN
        RAISE EXCEPTION 'insufficient balance';
    END IF;
    UPDATE {s}.accounts SET balance = balance - amount WHERE id = from_id;
    UPDATE {s}.accounts SET balance = balance + amount WHERE id = to_id;
    INSERT INTO {s}.transfers (from_id, to_id, amount) VALUES (from_id, to_id, amount)
        RETURNING id INTO transfer_id;
    INSERT INTO {s}.entries (transfer_id, account_id, amount)
        VALUES (transfer_id, from_id, -amount), (transfer_id, to_id, amount);
    RETURN transfer_id;
END $$;
CREATE FUNCTION {s}.transfer_serialized(from_id bigint, to_id bigint, amount bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('{s}'));  -- one transfer at a time, as in one total order
    RETURN {s}.transfer(from_id, to_id, amount);
END $$;
INSERT INTO {s}.accounts SELECT g, {holding} FROM generate_series(0, {last}) g;
"""


def create_sql_ledger(schema: str) -> None:
    statements = SQL_LEDGER.format(s=f'"{schema}"', holding=HOLDING, last=INVESTORS - 1)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(statements.encode())


def sql_ledger_transfers(schema: str, seconds: float, clients: int, function: str = "transfer") -> Run:
    """The pgledger-style baseline: one connection per client, one transaction per transfer."""
    call = sql.SQL("SELECT {}(%s, %s, %s)").format(sql.Identifier(schema, function)).as_bytes(None)
    connections = [psycopg.connect(PG_URL, autocommit=True) for _ in range(clients)]
    pool = iter(connections)
    local = threading.local()

    def transfer(rng: random.Random, _: str) -> None:
        if not hasattr(local, "conn"):
            local.conn = next(pool)
        sender, receiver = rng.sample(range(INVESTORS), 2)
        local.conn.execute(call, (sender, receiver, rng.randint(1, 3)), prepare=True)

    try:
        return clients_for(seconds, clients, f"sql-ledger-{clients}", transfer)
    finally:
        for conn in connections:
            conn.close()


def raw_single_commits(schema: str, seconds: float) -> list[float]:
    """Latencies (ms) of one-row INSERT then COMMIT, one after the other."""
    table = sql.Identifier(schema, "bench_raw")
    insert = sql.SQL("INSERT INTO {} (n, state) VALUES (%s, %s)").format(table).as_bytes(None)
    latencies: list[float] = []
    with psycopg.connect(PG_URL) as conn:
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (n bigint, state bytea)").format(table))
        conn.commit()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 100:
            started = time.perf_counter()
            conn.execute(insert, (len(latencies), b"x" * 200), prepare=True)
            conn.commit()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies[20:]  # the first ones warm the connection up


# ----- over HTTP -----


async def _http_load(port: int, requests: Callable[[int, int], bytes], seconds: float, clients: int) -> Run:
    """`clients` keep-alive connections each sending `requests(client, n)` one after another."""
    import asyncio

    run = Run(clients)
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sequence = 0
        try:
            while time.perf_counter() < deadline:
                sequence += 1
                started = time.perf_counter()
                writer.write(requests(number, sequence))
                status = int((await reader.readline()).split()[1])
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                await reader.readexactly(length)
                if status < 300:
                    run.committed += 1
                    run.latencies_ms.append((time.perf_counter() - started) * 1000)
                elif status == 409:
                    run.conflicts += 1
                elif status == 422:
                    run.rejected += 1
                else:
                    run.failed += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


def _cpu_seconds(pid: int | str) -> float:
    """User and system CPU seconds process `pid` has used (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listed:
                found += [int(child) for child in listed.read().split()]
    except OSError:
        pass
    return found


def _cpu_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server's workers, its supervising process (the
    projection runner), every PostgreSQL process, and this process (the load)."""
    postgres = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == "postgres":
                    postgres += _cpu_seconds(pid)
        except OSError:
            continue
    return {
        "api_workers": sum(_cpu_seconds(child) for child in _children(server_pid)),
        "supervisor_with_projection_runner": _cpu_seconds(server_pid),
        "postgres": postgres,
        "load_generator": time.process_time(),
    }


def _accounted(server_pid: int, load: Callable[[], Run]) -> tuple[Run, dict[str, float]]:
    """A load's run, and the CPU milliseconds per answered request each role used meanwhile."""
    before = _cpu_by_role(server_pid)
    run = load()
    after = _cpu_by_role(server_pid)
    return run, {
        role: round(1000 * (after[role] - before[role]) / max(run.committed, 1), 3) for role in after
    }


def http_measure(url: str, asset_id: str, explain: bool) -> None:
    import asyncio
    import json as json_module

    from adapters import bootstrap
    from adapters.api.keys import KeyStore
    from ledger.config import Settings

    key = KeyStore(bootstrap.read_engine(Settings(database_url=url))).create("admin")
    with served(log, url, "--workers", "2", quiet=True, start_seconds=120) as (server, port):
        time.sleep(2.0)  # both workers up
        health = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"
        rngs = [random.Random(f"http-{n}") for n in range(CLIENTS)]
        run_ids = iter(uuid.uuid4().hex[:8] for _ in range(2))  # the warm-up's keys, then the measure's
        run_id = ""

        def transfer(number: int, sequence: int) -> bytes:
            sender, receiver = rngs[number].sample(range(INVESTORS), 2)
            body = json_module.dumps({
                "asset_id": asset_id, "from_investor_id": investor_name(sender),
                "to_investor_id": investor_name(receiver), "quantity": "1", "forced": True,
            }).encode()
            return (
                f"POST /v1/transfers HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
                f"Idempotency-Key: {run_id}-{number}-{sequence}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        # Both warmed up first: the transfers' so that each worker has the asset and the
        # investors in its cache, as the in-process measures do.
        asyncio.run(_http_load(port, lambda *_: health, WARM_UP_SECONDS, CLIENTS))
        base, base_cpu = _accounted(
            server.pid, lambda: asyncio.run(_http_load(port, lambda *_: health, SECONDS, CLIENTS))
        )
        run_id = next(run_ids)
        asyncio.run(_http_load(port, transfer, WARM_UP_SECONDS, CLIENTS))
        run_id = next(run_ids)  # fresh keys: a warm-up key sent again would only replay
        ours, ours_cpu = _accounted(
            server.pid, lambda: asyncio.run(_http_load(port, transfer, SECONDS, CLIENTS))
        )
    log(f"http: healthz {base.rate:.0f}/s, transfers {ours.rate:.0f}/s "
        f"(failed {ours.failed}, conflicts {ours.conflicts}, rejected {ours.rejected})")
    ratio = ours.rate / base.rate
    measure("append_http_workers_2", ours.rate, "transfers/s", base.rate,
            "GET /healthz, same server and connections", f">= {TARGET_HTTP}",
            ratio >= TARGET_HTTP and ours.failed == 0,
            {**ours.explained(), "cpu_ms_per_transfer": ours_cpu, "cpu_ms_per_healthz": base_cpu}
            if explain else None,
            failed=ours.failed, conflicts=ours.conflicts)


def main() -> None:
    args = arguments(__doc__, ("--http", "only the HTTP measure"))
    explain = args.explain
    with scratch_schema(log) as schema:
        url = with_schema(PG_URL, schema)
        app = LedgerApplication(store_env(url))
        if args.http:
            try:
                asset_id = set_up(app)
            finally:
                app.close()
            http_measure(url, asset_id, explain)
            return
        try:
            asset_id = set_up(app)
            create_sql_ledger(schema)
            ledger_transfers(app, asset_id, WARM_UP_SECONDS, CLIENTS, "warm-up")
            for clients in (CLIENTS, WIDE_CLIENTS):
                base = sql_ledger_transfers(schema, SECONDS, clients)
                ours = ledger_transfers(app, asset_id, SECONDS, clients, f"ledger-{clients}")
                ratio = ours.rate / base.rate
                explained = ours.explained() if explain else None
                if explained is not None and clients == CLIENTS:
                    # The same SQL transfers one at a time (a global lock first): the commits of
                    # one total order (a hash chain) are serial, and share no WAL flush.
                    serialized = sql_ledger_transfers(schema, SECONDS, clients, "transfer_serialized")
                    explained["serialized_sql_ledger_transfers_per_s"] = round(serialized.rate, 3)
                measure(f"append_{clients}_clients", ours.rate, "transfers/s", base.rate,
                     f"pgledger-style plpgsql transfer(), {clients} connections", f">= {TARGET_SQL_LEDGER}",
                     ratio >= TARGET_SQL_LEDGER, explained, conflicts=ours.conflicts)
            raw = raw_single_commits(schema, 1.5)
            single = ledger_transfers(app, asset_id, SECONDS, 1, "one-client")
            p50, raw_p50 = statistics.median(single.latencies_ms), statistics.median(raw)
            measure("append_p50_latency", p50, "ms", raw_p50, "raw single-row INSERT+COMMIT p50",
                 f"<= {TARGET_P50}", p50 / raw_p50 <= TARGET_P50, single.explained() if explain else None)
        finally:
            app.close()
        for processes in (2, 4):
            base = processes_transfers(url, asset_id, 1)  # spawned too, asset loaded before the clock
            ours = processes_transfers(url, asset_id, processes)
            ratio = ours.rate / base.rate
            measure(f"append_{processes}_processes", ours.rate, "transfers/s", base.rate,
                 f"one process of {PROCESS_CLIENTS} clients", f">= {TARGET_PROCESSES}, conflicts == 0",
                 ratio >= TARGET_PROCESSES and ours.conflicts == 0, ours.explained() if explain else None,
                 conflicts=ours.conflicts)
        verifier = LedgerApplication(store_env(url))
        try:
            verified = verifier.admin.verify()
        finally:
            verifier.close()
        assert verified.ok, f"hash chain does not verify: {verified.reason}"
        log(f"hash chain verified over {verified.events_checked} events")


if __name__ == "__main__":
    main()
