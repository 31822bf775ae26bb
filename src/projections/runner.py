"""The projection runner: exactly-once processing of the event stream into every read model.

Each batch runs in one read-database transaction that (1) locks the views'
tracking rows, (2) reads the next events from the event store, (3) lets every
view turn them into rows and (4) writes the rows and the new tracking position
together. A second runner on the same views waits on the tracking-row lock and
then continues from the position the first one committed, so nothing is applied
twice or skipped; a crash rolls the whole batch back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from eventsourcing.utils import resolve_topic
from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.application import LedgerApplication
from ledger.library import EventDecoder, registered_handler
from ledger.pauses import gc_paused
from ledger.store import LedgerPostgresRecorder
from projections.analytics import AnalyticsView
from projections.assets import AssetsView
from projections.batch import Batch
from projections.chain import ChainView
from projections.distributions import DistributionsView
from projections.holdings import HoldingsView
from projections.investors import InvestorsView
from projections.proposals import ProposalsView
from projections.schema import metadata
from projections.statements import StatementsView

BATCH_SIZE = 5000
# While catching up, one transaction takes up to this many events (pages of `batch_size`):
# each holder a transaction changed is written once, however many of its events it saw, and
# there are fewer commits and scratch tables.
TRANSACTION_EVENTS = 50_000
MAX_BACKOFF = 5.0  # seconds between attempts while the store is away, at most
logger = logging.getLogger(__name__)


class View(Protocol):
    name: str

    def load(self, conn: Connection) -> None: ...

    def process_event(self, event: Any, batch: Batch) -> None: ...

    def flush(self, batch: Batch) -> None: ...


VIEWS: tuple[Callable[[dict[str, Table]], View], ...] = (
    InvestorsView,
    AssetsView,
    HoldingsView,
    DistributionsView,
    ProposalsView,
    ChainView,
    AnalyticsView,
    StatementsView,
)


class ProjectionRunner:
    """Brings the read models up to the head of the event store, batch by batch."""

    def __init__(
        self,
        app: LedgerApplication,
        engine: Engine,
        tables: dict[str, Table] | None = None,
        batch_size: int = BATCH_SIZE,
        transaction_events: int = TRANSACTION_EVENTS,
        pipelined: bool = True,
    ) -> None:
        self.app = app
        self.engine = engine
        self.tables = tables or dict(metadata.tables)
        self.tracking = self.tables["rm_tracking"]
        self.views = [factory(self.tables) for factory in VIEWS]
        self.batch_size = batch_size
        self.transaction_events = max(batch_size, transaction_events)
        self.pipelined = pipelined
        self.position: int | None = None
        self.last_error: str | None = None
        # None: `run_forever` never ran here (another process projects); False: it has ended.
        self.running: bool | None = None
        self._dispatch: dict[str, list[tuple[View, Callable[[View, Any, Batch], None]]]] = {}
        self._decoder = EventDecoder(app.mapper)
        self._stop = threading.Event()

    def positions(self) -> dict[str, int]:
        """Each view's committed position."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(self.tracking.c.view, self.tracking.c.position)).all()
        known = {row.view: row.position for row in rows}
        return {view.name: known.get(view.name, 0) for view in self.views}

    def lag(self) -> dict[str, int]:
        """Head of the event store minus each view's position."""
        head = self.app.admin.head_position()
        return {name: head - position for name, position in self.positions().items()}

    def process_batch(self, stop: int | None = None) -> int:
        """Projects the next batch of events (up to `stop`); returns how many were processed."""
        try:
            with self.engine.connect().execution_options(writer=True) as conn, conn.begin():
                tracked = self._lock_tracking(conn)
                if tracked != self.position:
                    for view in self.views:
                        view.load(conn)
                    self.position = tracked
                notifications = self._read_transaction(tracked, stop)
                if not notifications:
                    return 0
                with gc_paused():
                    self._project(notifications, conn)
                last = notifications[-1][0]
                self._advance_tracking(conn, last)
        except BaseException:
            self.position = None  # the views' memory may hold effects that were rolled back
            raise
        self.position = last
        return len(notifications)

    def _read(self, start: int, limit: int, stop: int | None) -> list[Any]:
        """The next events as `(position, originator_id, version, topic, state)` tuples."""
        recorder = self.app.recorder
        if isinstance(recorder, LedgerPostgresRecorder):
            return recorder.select_event_rows(start, limit, stop)
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(
                start=start, limit=limit, stop=stop, inclusive_of_start=False
            )
        ]

    def _project(self, rows: Sequence[Any], conn: Connection) -> None:
        self._apply(rows).flush(conn)

    def _apply(self, rows: Sequence[Any]) -> Batch:
        """Lets every view turn the events into rows (and its memory into their effects)."""
        batch = Batch(self.engine.dialect.name)
        decode = self._decoder.decode_row
        for position, originator_id, version, topic, state in rows:
            handlers = self._handlers(topic)
            if handlers:  # an event no view shows is not even decoded
                event = decode(topic, originator_id, version, state)
                batch.position = position
                for view, handle in handlers:
                    handle(view, event, batch)
        for view in self.views:
            view.flush(batch)
        return batch

    def _handlers(self, topic: str) -> list[tuple[View, Callable[[View, Any, Batch], None]]]:
        """The views' registered handlers of the event class named by `topic`, looked up once
        per class (a `singledispatchmethod` call would look it up and wrap it on every event);
        a view's default handler, which does nothing, is left out."""
        if topic not in self._dispatch:
            event_class = resolve_topic(topic)
            handlers = []
            for view in self.views:
                handle = registered_handler(view, event_class)
                if handle is not None:
                    handlers.append((view, handle))
            self._dispatch[topic] = handlers
        return self._dispatch[topic]

    def _lock_tracking(self, conn: Connection) -> int:
        names = [view.name for view in self.views]
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(self.tracking).on_conflict_do_nothing(index_elements=["view"]),
            [{"view": name, "position": 0} for name in names],
        )
        rows = conn.execute(
            select(self.tracking.c.position).where(self.tracking.c.view.in_(names)).with_for_update()
        ).all()
        positions = {row.position for row in rows}
        if len(positions) != 1:
            msg = f"read models disagree on their position: {sorted(positions)}; run `ledger replay`"
            raise RuntimeError(msg)
        return int(positions.pop())

    def _advance_tracking(self, conn: Connection, last: int) -> None:
        """Moves every view's tracking row to `last`, in the transaction that wrote its rows."""
        conn.execute(
            self.tracking.update().where(self.tracking.c.view.in_([v.name for v in self.views])),
            {"position": last},
        )

    def catch_up(self, stop: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Processes batches until the head (or `stop`) is reached; returns the events processed."""
        total = 0
        if self.pipelined and self.engine.dialect.name == "postgresql":
            total = self._catch_up_pipelined(stop, progress)
        while not self._stop.is_set():  # stopping (SIGTERM) ends the work after the batch in flight
            done = self.process_batch(stop)
            if done == 0:
                return total
            total += done
            if progress is not None:
                progress(done)
        return total

    def _catch_up_pipelined(self, stop: int | None, progress: Callable[[int], None] | None) -> int:
        """Catches up while the previous transaction's writes run: a writer thread commits
        transaction k while this thread reads and applies the events of k+1 to the views'
        memory, speculatively. Each transaction still locks the tracking rows, checks that
        they hold the position its rows were made from (the end of k), and writes its rows
        and its new position together; if another runner moved them meanwhile (or a write
        failed) nothing more is committed, the views' memory is dropped, and the ordinary
        loop reloads it and goes on from the committed position."""
        done = self.process_batch(stop)  # locks, loads the views if need be, sets `position`
        if done == 0:
            return 0
        if progress is not None:
            progress(done)
        writer = _Writer(self, progress)
        try:
            while not writer.failed and not self._stop.is_set():
                start = self.position
                assert start is not None
                rows = self._read_transaction(start, stop)
                if not rows:
                    break
                with gc_paused():
                    batch = self._apply(rows)
                last = rows[-1][0]
                self.position = None  # until the writer has committed `last`
                writer.submit(start, batch, last, len(rows))
                self.position = last
        finally:
            writer.close()
            if writer.failed or writer.committed != self.position:
                self.position = None  # speculative effects that were never committed
        if writer.error is not None:
            raise writer.error
        return done + writer.events

    def _read_transaction(self, start: int, stop: int | None) -> list[Any]:
        """The events of one transaction: pages of `batch_size`, until the budget, `stop` or the head."""
        rows: list[Any] = []
        last = start
        budget = self.transaction_events if stop is None else min(self.transaction_events, stop - start)
        while budget > 0:
            limit = min(self.batch_size, budget)
            page = self._read(last, limit, stop)
            rows.extend(page)
            if len(page) < limit:
                break
            budget -= len(page)
            last = page[-1][0]
        return rows

    def _commit(self, expected: int, batch: Batch, last: int) -> bool:
        """Writes a batch made from position `expected` and moves the views to `last`, in one
        transaction; False (nothing written) if the views are not at `expected`."""
        with self.engine.connect().execution_options(writer=True) as conn, conn.begin():
            if self._lock_tracking(conn) != expected:
                return False
            batch.flush(conn)
            self._advance_tracking(conn, last)
        return True

    def wait_for(self, position: int, timeout: float) -> bool:
        """Read-your-writes: True once every view has processed `position`, False after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if min(self.positions().values()) >= position:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def run_forever(self, store_url: str | None = None, idle: float = 0.2) -> None:
        """Keeps the views at the head: woken by PostgreSQL NOTIFY, or polling on SQLite.

        Any failure (the store restarted, a batch that cannot be applied) is logged and kept in
        `last_error`; the loop backs off (up to MAX_BACKOFF seconds), opens a fresh listener and
        carries on from the committed position, until `stop`."""
        listens = store_url is not None and store_url.startswith("postgres")
        listener: _Listener | None = None
        backoff = idle
        self.running = True
        try:
            while not self._stop.is_set():
                try:
                    if listens and listener is None:  # listening before catching up misses no NOTIFY
                        listener = _Listener(str(store_url), self.app)
                    caught_up = self.catch_up() == 0
                    self.last_error, backoff = None, idle
                    if caught_up:
                        if listener is not None:
                            listener.wait(idle)
                        else:
                            self._stop.wait(idle)
                except Exception as error:  # keep serving: report, back off, try again
                    self.last_error = f"{type(error).__name__} at position {self.position}: {error}"[:500]
                    logger.exception("projection runner failed; retrying in %.1f s", backoff)
                    if listener is not None:
                        listener.close()
                        listener = None
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            self.running = False
            if listener is not None:
                listener.close()

    def stop(self) -> None:
        self._stop.set()


class _Writer:
    """Commits the runner's batches in order on a thread of its own, one in flight at a time."""

    def __init__(self, runner: ProjectionRunner, progress: Callable[[int], None] | None) -> None:
        self.runner = runner
        self.progress = progress
        self.queue: queue.Queue[tuple[int, Batch, int, int] | None] = queue.Queue(maxsize=1)
        self.committed: int | None = runner.position
        self.events = 0
        self.failed = False  # a batch was not committed: the later ones are not even tried
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="projection-writer", daemon=True)
        self.thread.start()

    def submit(self, expected: int, batch: Batch, last: int, count: int) -> None:
        self.queue.put((expected, batch, last, count))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.failed:
                continue
            expected, batch, last, count = item
            try:
                if not self.runner._commit(expected, batch, last):
                    self.failed = True  # another runner moved the views: start again from there
                    continue
            except BaseException as error:  # raised by catch_up once the thread is done
                self.failed, self.error = True, error
                continue
            self.committed = last
            self.events += count
            if self.progress is not None:
                self.progress(count)


class _Listener:
    """LISTEN on the event store's channel, which the recorder NOTIFYs on every append."""

    def __init__(self, store_url: str, app: LedgerApplication) -> None:
        base = store_url.split("?", 1)[0]
        self.conn = psycopg.connect(base, autocommit=True)
        channel = app.recorder.channel_name  # type: ignore[attr-defined]
        self.conn.execute(f'LISTEN "{channel}"')

    def wait(self, timeout: float) -> None:
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            break

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):  # a connection the server dropped
            self.conn.close()
