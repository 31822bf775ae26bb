"""Background jobs on dramatiq: carry out the chain outbox, mirror the chain, reconcile,
and sign tree heads (and anchor them on the chain) every `LEDGER_AUDIT_SIGN_SECONDS`.

With `LEDGER_REDIS_URL` set the jobs go through Redis, so any number of `ledger
worker` processes on any machines share them (the outbox's lock keeps sending to
one at a time). Unset, they run in-process on dramatiq's stub broker with a
worker thread of its own.

Over Redis the periodic runs are claimed, so that N worker processes enqueue each job
once a period, not N times. Every job is safe to run twice or at once with itself all
the same: the outbox records each step before and after sending, the mirror's
checkpoint is version-checked, and a reconciliation only reads. A job that fails on
a transient chain error is retried by dramatiq with back-off, a bounded number of
times; the next periodic run picks up where it stopped anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from adapters.chain.anchor import AnchorPublisher
from adapters.chain.service import ChainService
from ledger.actor import acting_as, system
from ledger.errors import LedgerError
from ledger.transparency import HeadSigner

QUEUE = "ledger-chain"
MAX_RETRIES = 5
PERIODS = {  # seconds
    "carry_out_chain_operations": 1.0,
    "mirror_chain": 2.0,
    "reconcile_assets": 60.0,
    "sign_tree_head": 60.0,
}
CHAIN_JOBS = ("carry_out_chain_operations", "mirror_chain", "reconcile_assets")
logger = logging.getLogger(__name__)


def build_broker(redis_url: str | None) -> dramatiq.Broker:
    if redis_url:
        return RedisBroker(url=redis_url, namespace="ledger")  # type: ignore[no-untyped-call]
    return StubBroker()


@dataclass
class Jobs:
    """The jobs as dramatiq actors on one broker, and a schedule that enqueues them: the chain
    jobs when the chain adapter is on (`service`), the signing of tree heads when a signing
    key is configured (`signer`), and the anchoring of each new head when both are on."""

    service: ChainService | None
    broker: dramatiq.Broker
    periods: dict[str, float] = field(default_factory=lambda: dict(PERIODS))
    signer: HeadSigner | None = None
    anchor: AnchorPublisher | None = None  # with the signer: each new head is anchored on the chain
    actors: dict[str, dramatiq.Actor[Any, Any]] = field(init=False)

    def __post_init__(self) -> None:
        # The jobs record what they do as events, each as its component (`ledger.actor`);
        # they return nothing (no result backend).
        def carry_out_chain_operations() -> None:
            with acting_as(system("worker")):
                logger.debug("%s outbox operations carried out", self._chain().carry_out())

        def mirror_chain() -> None:
            with acting_as(system("mirror")):
                logger.debug("%s chain logs mirrored", sum(report.logs for report in self._chain().sync()))

        def reconcile_assets() -> None:
            with acting_as(system("reconciliation")):
                self._reconcile_assets()

        def sign_tree_head() -> None:
            with acting_as(system("signer")):
                self._sign_tree_head()

        jobs: list[Callable[[], None]] = []
        if self.service is not None:
            jobs += [carry_out_chain_operations, mirror_chain, reconcile_assets]
        if self.signer is not None:
            jobs.append(sign_tree_head)
        self.actors = {
            job.__name__: dramatiq.actor(
                actor_name=f"ledger.{job.__name__}",
                queue_name=QUEUE,
                broker=self.broker,
                max_retries=MAX_RETRIES,
                min_backoff=500,
                max_backoff=30_000,
            )(job)
            for job in jobs
        }
        self.periods = {name: period for name, period in self.periods.items() if name in self.actors}

    def _sign_tree_head(self) -> None:
        assert self.signer is not None
        head = self.signer.sign_if_grown()
        if head is not None:
            logger.info("tree head signed: %s events, root %s", head.tree_size, head.root)
        if self.anchor is not None:  # also a head signed but not anchored before (the chain was away)
            anchored = self.anchor.publish_latest()
            if anchored is not None:
                logger.info("tree head of %s events anchored in %s", anchored[0].tree_size, anchored[1])

    def _chain(self) -> ChainService:
        assert self.service is not None  # the chain jobs exist only with the chain adapter
        return self.service

    def _reconcile_assets(self) -> None:
        for asset_id in self._chain().bound_assets():
            try:
                _, report = self._chain().reconcile(asset_id)  # recorded as an event
            except LedgerError as refused:  # e.g. nothing final yet since the deployment
                logger.info("reconciliation of %s not run: %s", asset_id, refused.detail)
                continue
            if report["differences"]:
                logger.warning("%s: %s differences with the chain", asset_id, len(report["differences"]))

    def enqueue(self, name: str) -> None:
        self.actors[name].send()

    def claim(self, name: str, period: float) -> bool:
        """Whether this scheduler enqueues `name` now. Over Redis one scheduler a period
        does, however many worker processes run (a key of the broker's namespace set only
        if absent, expiring with the period); on the in-process broker, always."""
        if not isinstance(self.broker, RedisBroker):
            return True
        key = f"{self.broker.namespace}:schedule:{name}"
        return bool(self.broker.client.set(key, "1", nx=True, px=max(1, round(period * 1000))))


@dataclass
class WorkerProcess:
    """A dramatiq worker consuming the chain jobs, and the scheduler that enqueues them."""

    jobs: Jobs
    threads: int = 1
    _stop: threading.Event = field(default_factory=threading.Event)
    _worker: dramatiq.Worker | None = None
    _scheduler: threading.Thread | None = None

    def start(self) -> None:
        self._worker = dramatiq.Worker(self.jobs.broker, queues={QUEUE}, worker_threads=self.threads)
        self._worker.start()
        self._scheduler = threading.Thread(target=self._schedule, name="ledger-scheduler", daemon=True)
        self._scheduler.start()

    def _schedule(self) -> None:
        due = dict.fromkeys(self.jobs.periods, 0.0)
        tick = min(self.jobs.periods.values())
        elapsed = 0.0
        while not self._stop.is_set():
            for name, period in self.jobs.periods.items():
                if elapsed >= due[name]:
                    try:
                        if self.jobs.claim(name, period):
                            self.jobs.enqueue(name)
                    except Exception:  # the broker is away: try again on the next tick
                        logger.exception("could not enqueue %s", name)
                    due[name] = elapsed + period
            self._stop.wait(tick)
            elapsed += tick

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.stop()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
