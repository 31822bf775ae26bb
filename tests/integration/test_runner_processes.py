"""Projection runners as separate processes: killed mid-batch, and two at once.

(a) Crash safety: a runner in a child process is SIGKILLed while a batch is open
    (hung after writing its rows, hung right before COMMIT, or at a random moment
    while it projects slowly). What it committed must be exactly a prefix of whole
    batches, equal to a clean `replay(to=that position)`; a new runner then resumes
    and the tables equal a clean full replay: no effect applied twice, none lost.
(b) Two runner processes on the same views, running while commands are appended,
    end with exactly the tables of a replay, without error, and between them
    project every event exactly once.

Children run `python -c` on `child_main` below, with their orders as JSON; they
talk back through small files (written atomically) and their exit status.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select

from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.errors import LedgerError
from projections.migrate import upgrade
from projections.replay import replay
from projections.runner import ProjectionRunner
from projections.schema import engine_for, metadata
from tests.conftest import PG_URL
from tests.support import onboard, open_asset

ROOT = Path(__file__).resolve().parents[2]
HANG_AT = 3  # the batch a hanging child never commits (so two batches are committed before it)
CHILD_TIMEOUT = 60.0

pytestmark = pytest.mark.integration


# ----- the child process -----


def child_main() -> None:
    """A projection runner with orders from argv[1] (JSON); see `spawn_runner`."""
    from sqlalchemy import Connection
    from sqlalchemy import event as sa_event

    import ledger.library
    import projections.batch

    orders: dict[str, Any] = json.loads(sys.argv[1])
    app = LedgerApplication(store_env(orders["store_url"]))
    engine = engine_for(orders["store_url"])
    # One page a transaction, so that the positions committed are the ends of pages of `batch_size`.
    runner = ProjectionRunner(
        app, engine, batch_size=orders["batch_size"], transaction_events=orders["batch_size"]
    )
    mode = orders["mode"]
    signal_file = Path(orders["signal"])

    def hang(where: str) -> None:
        tell(signal_file, where)
        time.sleep(CHILD_TIMEOUT * 2)  # until killed

    if mode == "hang_mid_batch":  # the batch's rows are written, its tracking position is not
        flushes = {"n": 0}
        flush = projections.batch.Batch.flush

        def flush_then_hang(self: projections.batch.Batch, conn: Connection) -> None:
            flush(self, conn)
            flushes["n"] += 1
            if flushes["n"] == HANG_AT:
                hang("rows written")

        projections.batch.Batch.flush = flush_then_hang  # type: ignore[method-assign]
    elif mode == "hang_before_commit":  # rows and tracking written, COMMIT not sent
        commits = {"n": 0}

        @sa_event.listens_for(engine, "commit")
        def before_commit(conn: Connection) -> None:
            if conn.get_execution_options().get("writer"):
                commits["n"] += 1
                if commits["n"] == HANG_AT:
                    hang("about to commit")

    elif mode == "slow":  # every event takes a while, so a random kill lands inside a batch
        decode = ledger.library.EventDecoder.decode_row

        def slowly(self: ledger.library.EventDecoder, *fields: Any) -> Any:
            time.sleep(orders["delay"])
            return decode(self, *fields)

        ledger.library.EventDecoder.decode_row = slowly  # type: ignore[method-assign]

    if mode == "loop":  # runs next to other runners until told the head to reach
        tell(signal_file, "ready")
        stop_file = Path(orders["stop"])
        processed = batches = 0
        deadline = time.monotonic() + CHILD_TIMEOUT * 2  # never outlive a test that went wrong
        while time.monotonic() < deadline:
            done = runner.process_batch()
            processed += done
            batches += bool(done)
            head = int(stop_file.read_text()) if done == 0 and stop_file.exists() else None
            if head is not None and min(runner.positions().values()) >= head:
                break
            # A pause after every batch too: the other runner gets its turns at the lock
            # however the machine schedules the two (else one may do every batch).
            time.sleep(0.005)
        else:
            raise SystemExit("the stop file never came")
        sys.stdout.write(json.dumps({"processed": processed, "batches": batches}))
    else:
        tell(signal_file, "started")
        runner.catch_up()
        tell(signal_file, "finished")
    app.close()
    engine.dispose()


SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_runner_left_behind() -> Iterator[None]:
    yield
    while SPAWNED:
        child = SPAWNED.pop()
        if child.poll() is None:
            kill(child)


def tell(path: Path, text: str) -> None:
    """Writes a small file atomically, so the reader never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def spawn_runner(
    store_url: str, mode: str, batch_size: int, signal_file: Path, **more: Any
) -> subprocess.Popen[str]:
    orders = {
        "store_url": store_url,
        "mode": mode,
        "batch_size": batch_size,
        "signal": str(signal_file),
        **more,
    }
    signal_file.unlink(missing_ok=True)
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    code = "from tests.integration.test_runner_processes import child_main; child_main()"
    child = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(orders)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    SPAWNED.append(child)
    return child


def await_signal(child: subprocess.Popen[str], signal_file: Path, expected: str) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not (signal_file.exists() and signal_file.read_text() == expected):
        if child.poll() is not None:
            _, err = child.communicate()
            pytest.fail(f"runner process exited ({child.returncode}) before {expected!r}:\n{err}")
        if time.monotonic() > deadline:
            kill(child)
            pytest.fail(f"runner process never signalled {expected!r}")
        time.sleep(0.005)


def kill(child: subprocess.Popen[str]) -> None:
    """SIGKILL: no cleanup, no rollback by the child; the database must cope."""
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=CHILD_TIMEOUT)


def finish(child: subprocess.Popen[str]) -> str:
    try:
        out, err = child.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill(child)
        pytest.fail("runner process did not finish")
    assert child.returncode == 0, f"runner process failed ({child.returncode}):\n{err}"
    assert "Traceback" not in err, err
    return out


# ----- the ledger's history -----


class History:
    """Commands of every kind on two assets; many are accepted, some rejected."""

    def __init__(self, app: LedgerApplication, seed: int) -> None:
        self.app = app
        self.rng = random.Random(seed)
        self.assets = [open_asset(app), open_asset(app, asset_id="WATER-SBY-02", unit_price=50_000)]
        self.investors = [onboard(app, f"inv-{n}", country="ID" if n % 2 else "SG") for n in range(6)]
        self.proposals: list[str] = []
        self.rejected = 0

    def invest(self, investor_id: str, asset_id: str) -> None:
        outcome = self.app.place_investment(investor_id, asset_id, self.rng.randrange(100_000, 3_000_000))
        investment_id = str(outcome.result["investment_id"])
        if self.rng.random() < 0.8:
            self.app.confirm_payment(investment_id, f"pay-{investment_id}")
        else:
            self.app.cancel_investment(investment_id)

    def step(self) -> None:
        rng, app = self.rng, self.app
        asset_id = rng.choice(self.assets)
        a, b = rng.sample(self.investors, 2)
        holders = sorted(app.get_asset(asset_id).balances)
        if holders and rng.random() < 0.85:  # mostly someone with tokens to move
            a = rng.choice(holders)
            b = rng.choice([i for i in self.investors if i != a])
        quantity = rng.randrange(1, 25)
        actions = [
            lambda: self.invest(a, asset_id),
            lambda: self.invest(a, asset_id),
            lambda: app.transfer(asset_id, a, b, quantity),
            lambda: app.transfer(asset_id, a, b, quantity),
            lambda: app.transfer(asset_id, a, b, quantity, forced=True),
            lambda: app.redeem(asset_id, a, quantity),
            lambda: app.freeze_tokens(asset_id, a, quantity),
            lambda: app.unfreeze_tokens(asset_id, a, quantity),
            lambda: app.freeze_investor(asset_id, a),
            lambda: app.unfreeze_investor(asset_id, a),
            self.declare_and_propose,
            self.vote,
        ]
        try:
            rng.choice(actions)()
        except LedgerError:
            self.rejected += 1

    def declare_and_propose(self) -> None:
        asset_id = self.rng.choice(self.assets)
        outcome = self.app.declare_distribution(asset_id, self.rng.randrange(1, 10_000_000))
        distribution_id = str(outcome.result["distribution_id"])
        self.app.pay_distribution(distribution_id, None if self.rng.random() < 0.5 else self.investors[0])
        self.proposals.append(
            str(self.app.create_proposal(asset_id, "Extend?", ["yes", "no"], 2_500).result["proposal_id"])
        )

    def vote(self) -> None:
        if not self.proposals:
            return
        proposal_id = self.rng.choice(self.proposals)
        if self.rng.random() < 0.2:
            self.app.close_proposal(proposal_id)
        else:
            self.app.cast_vote(proposal_id, self.rng.choice(self.investors), self.rng.choice(["yes", "no"]))

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()


def positions_of(app: LedgerApplication) -> list[int]:
    found: list[int] = []
    while batch := app.recorder.select_notifications(
        start=found[-1] if found else 0, limit=1000, inclusive_of_start=False
    ):
        found += [n.id for n in batch]
    return found


def snapshot(engine: Engine, *, tracking: bool = True) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table, in primary-key order."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, table in sorted(metadata.tables.items()):
            if tracking or name != "rm_tracking":
                order = list(table.primary_key.columns)
                tables[name] = [tuple(row) for row in conn.execute(select(table).order_by(*order))]
    return tables


@pytest.fixture
def ledger(store_url: str) -> Iterator[tuple[LedgerApplication, Engine]]:
    """The ledger and its read database (on SQLite the very same file, as configured by default)."""
    app = LedgerApplication(store_env(store_url))
    engine = engine_for(store_url)
    upgrade(engine)
    yield app, engine
    app.close()
    engine.dispose()


def committed_position(engine: Engine, app: LedgerApplication) -> int:
    positions = set(ProjectionRunner(app, engine).positions().values())
    assert len(positions) == 1, f"views disagree: {positions}"
    return positions.pop()


def batch_ends(events: list[int], batch_size: int) -> set[int]:
    """The positions a runner can have committed: 0, or the last event of a whole batch (or the head).

    (Every runner here starts at 0 or at such a position, with the same batch size.)
    """
    return {0, events[-1]} | {events[k - 1] for k in range(batch_size, len(events) + 1, batch_size)}


def check_resume_after_kill(app: LedgerApplication, engine: Engine, at: int, batch_size: int) -> None:
    """The killed runner left a clean prefix; resuming reaches exactly a full replay."""
    events = positions_of(app)
    assert at in batch_ends(events, batch_size), f"committed position {at} is not the end of a whole batch"
    left = snapshot(engine, tracking=False)
    ProjectionRunner(app, engine, batch_size=batch_size).catch_up()
    resumed = snapshot(engine)

    assert replay(app, engine, to=at) == at
    assert snapshot(engine, tracking=False) == left, "the killed batch left some of its effects behind"
    assert replay(app, engine) == events[-1]
    assert snapshot(engine) == resumed, "resuming after the kill differs from a clean replay"


# ----- (a) crash safety -----


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "expected"), [("hang_mid_batch", "rows written"), ("hang_before_commit", "about to commit")]
)
def test_a_runner_killed_inside_a_batch_commits_nothing_of_it_and_a_new_one_resumes(
    ledger: tuple[LedgerApplication, Engine], store_url: str, tmp_path: Path, mode: str, expected: str
) -> None:
    app, engine = ledger
    History(app, seed=7).run(100)
    batch_size = 25
    assert len(positions_of(app)) > HANG_AT * batch_size

    child = spawn_runner(store_url, mode, batch_size, tmp_path / "signal")
    await_signal(child, tmp_path / "signal", expected)
    kill(child)

    at = committed_position(engine, app)
    assert at == positions_of(app)[(HANG_AT - 1) * batch_size - 1], (
        "only the batches before the hung one count"
    )
    check_resume_after_kill(app, engine, at, batch_size)


@pytest.mark.slow
def test_runners_killed_at_random_moments_leave_whole_batches_and_resume(
    ledger: tuple[LedgerApplication, Engine], store_url: str, tmp_path: Path
) -> None:
    app, engine = ledger
    History(app, seed=11).run(110)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    batch_size, delay = 20, 0.004
    events = positions_of(app)
    at = 0
    for kill_number in range(3):
        child = spawn_runner(store_url, "slow", batch_size, tmp_path / "signal", delay=delay)
        await_signal(child, tmp_path / "signal", "started")
        time.sleep(rng.uniform(0.0, sum(1 for p in events if p > at) * delay))  # before it would finish
        kill(child)
        before, at = at, committed_position(engine, app)
        note = f"seed {seed}, kill {kill_number}, committed position {at}"
        assert at >= before, note
        assert at in batch_ends(events, batch_size), note
        killed = snapshot(engine, tracking=False)
        assert replay(app, engine, to=at) == at, note
        assert snapshot(engine, tracking=False) == killed, note
    check_resume_after_kill(app, engine, at, batch_size)


# ----- (b) two runner processes at once -----


@pytest.mark.slow
def test_two_runner_processes_next_to_appends_project_every_event_exactly_once(
    ledger: tuple[LedgerApplication, Engine], store_url: str, tmp_path: Path
) -> None:
    app, engine = ledger
    history = History(app, seed=3)
    stop = tmp_path / "stop"
    children = []
    # Started one after the other so that both are surely running before commands arrive.
    for n, batch_size in enumerate((7, 4)):
        signal_file = tmp_path / f"signal-{n}"
        child = spawn_runner(store_url, "loop", batch_size, signal_file, stop=str(stop))
        await_signal(child, signal_file, "ready")
        children.append(child)

    history.run(120)
    head = app.admin.head_position()
    tell(stop, str(head))
    assert ProjectionRunner(app, engine).wait_for(head, timeout=CHILD_TIMEOUT), "read-your-writes timed out"
    results = [json.loads(finish(child)) for child in children]

    events = positions_of(app)
    assert events[-1] == head
    assert sum(r["processed"] for r in results) == len(events), f"not exactly once: {results}"
    assert all(r["processed"] > 0 for r in results), f"one runner never got to work: {results}"
    assert committed_position(engine, app) == head
    projected = snapshot(engine)
    assert replay(app, engine) == head
    assert snapshot(engine) == projected


# ----- starting processes at once -----


@pytest.mark.postgres
def test_two_ledgers_starting_at_once_on_postgres_do_not_deadlock(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runner (or API) processes start together on an existing store.

    The interleaving is forced: the first one's create transaction pauses right after
    the library's CREATE UNIQUE INDEX until the second one's transaction waits for a
    lock (or is done), as a scheduler may well interleave them.
    """
    LedgerApplication(store_env(pg_schema_url)).close()  # the store exists already
    errors: list[BaseException] = []
    execute = psycopg.Cursor.execute

    def start(name: str) -> threading.Thread:
        def run() -> None:
            try:
                LedgerApplication(store_env(pg_schema_url)).close()
            except Exception as error:
                errors.append(error)

        thread = threading.Thread(target=run, name=name)
        thread.start()
        return thread

    second: list[threading.Thread] = []

    def pausing_execute(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        result = execute(self, query, *args, **kwargs)
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        if threading.current_thread().name == "first" and "CREATE UNIQUE INDEX" in text and not second:
            second.append(start("second"))
            with psycopg.connect(PG_URL, autocommit=True) as monitor:
                deadline = time.monotonic() + 10
                while second[0].is_alive() and time.monotonic() < deadline:
                    waiting = monitor.execute(  # any lock: the second one's is the only other one
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND pid <> %s",
                        [self.connection.info.backend_pid],
                    ).fetchone()
                    if waiting and waiting[0]:
                        break
                    time.sleep(0.01)
        return result

    monkeypatch.setattr(psycopg.Cursor, "execute", pausing_execute)
    first = start("first")
    first.join(timeout=30)
    assert second, "the first ledger never created its index"
    second[0].join(timeout=30)
    assert not errors, errors
