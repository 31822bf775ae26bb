"""The chain adapter when things go wrong: a worker killed mid-send, the node going away,
logs the mirror cannot make sense of, and the jobs running on dramatiq over Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, cast

import pytest
from sqlalchemy import func, select

from adapters.chain import mirror as mirror_module
from adapters.chain.anvil import DEV_KEYS
from adapters.chain.rpc import Rpc, RpcUnavailableError
from adapters.worker import Jobs, WorkerProcess
from ledger.outbox import DONE
from projections.chain import chain_logs
from projections.schema import snapshot
from tests.chain.world import CONFIRMATIONS, World, address, tokenized
from tests.support import holding

pytestmark = [pytest.mark.anvil, pytest.mark.e2e, pytest.mark.slow]

DIE_AFTER_SENDING = textwrap.dedent(
    """
    import os
    from adapters import bootstrap
    from adapters.chain.trex import TrexClient

    send = TrexClient.broadcast

    def send_then_die(self, tx):
        send(self, tx)
        if tx.tx_hash == self.watched:
            os._exit(3)  # the worker dies after sending, before recording anything

    TrexClient.broadcast = send_then_die
    config = bootstrap.settings()
    app = bootstrap.build_application(config)
    service = bootstrap.build_chain(app, bootstrap.build_runner(app, config), config)
    sign = TrexClient.sign

    def sign_and_watch(self, suite, call, nonce):
        signed = sign(self, suite, call, nonce)
        if call.kind == "mint":
            self.watched = signed.tx_hash
        return signed

    TrexClient.watched = None
    TrexClient.sign = sign_and_watch
    service.carry_out()
    """
)


def test_a_worker_killed_after_sending_does_not_send_again(world: World, store_url: str) -> None:
    asset_id = tokenized(world)
    holding(world.app, asset_id, "alice", 40)
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": store_url,
        "LEDGER_CHAIN_RPC_URL": world.anvil.url,
        "LEDGER_CHAIN_AGENT_KEY": DEV_KEYS[0],
        "LEDGER_CHAIN_CONFIRMATIONS": str(CONFIRMATIONS),
    }
    died = subprocess.run(
        [sys.executable, "-c", DIE_AFTER_SENDING], check=False, env=env, capture_output=True, timeout=120
    )
    assert died.returncode == 3, died.stderr.decode()[-2000:]
    row = world.app.outbox.all_rows()[0]
    assert row.state == "signed" and row.tx_hash is not None
    suite = world.suite(asset_id)
    assert world.client.balance_of(suite, address("alice")) == 40  # it was sent and mined

    world.service.carry_out()  # the restarted worker
    row = world.app.outbox.all_rows()[0]
    assert row.state == DONE
    assert world.client.balance_of(suite, address("alice")) == 40  # and not sent again
    assert world.client.transaction_count() == row.nonce + 1  # nothing was sent after it
    world.anvil.mine(CONFIRMATIONS + 1)
    assert world.reconcile(asset_id)["differences"] == []


class FlakyRpc(Rpc):
    """The node drops every n-th request."""

    def __init__(self, url: str, every: int) -> None:
        super().__init__(url)
        self.every, self.requests = every, 0

    def _post(self, body: Any) -> Any:
        self.requests += 1
        if self.requests % self.every == 0:
            raise RpcUnavailableError("node unreachable")
        return super()._post(body)


def mirrored(world: World, asset_id: str) -> list[tuple[int, int]]:
    with snapshot(world.engine) as conn:
        rows = conn.execute(
            select(chain_logs.c.block_number, chain_logs.c.log_index).where(chain_logs.c.asset_id == asset_id)
        )
        return sorted((r.block_number, r.log_index) for r in rows)


def test_an_rpc_outage_makes_the_mirror_resume_without_gaps_or_duplicates(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset_id = tokenized(world)
    for name, quantity in (("alice", 10), ("bob", 20), ("carol", 30)):
        holding(world.app, asset_id, name, quantity)
    world.app.transfer(asset_id, "alice", "bob", 3)
    world.app.transfer(asset_id, "bob", "carol", 4)
    world.settle()
    monkeypatch.setattr(mirror_module, "FIRST_SPAN", 2)  # many small ranges, so the outages fall between them
    monkeypatch.setattr(mirror_module, "MAX_SPAN", 2)
    world.service.mirror.rpc = FlakyRpc(world.anvil.url, every=3)
    outages = 0
    for _ in range(200):
        try:
            world.service.mirror.sync(asset_id)
            break
        except RpcUnavailableError:
            outages += 1
    assert outages > 3
    world.service.runner.catch_up()
    mirror = world.service.mirror.mirror_of(asset_id)
    raw = Rpc(world.anvil.url).logs(
        [mirror.token, mirror.identity_registry], mirror.start_block, mirror.next_block - 1
    )
    expected = sorted((int(log["blockNumber"], 16), int(log["logIndex"], 16)) for log in raw)
    assert mirrored(world, asset_id) == expected


def test_a_range_holding_more_logs_than_one_transaction_takes_is_split_at_block_boundaries(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset_id = tokenized(world)
    for name, quantity in (("alice", 10), ("bob", 20), ("carol", 30)):
        holding(world.app, asset_id, name, quantity)
    world.settle()
    monkeypatch.setattr(mirror_module, "MAX_LOGS", 3)
    world.service.mirror.sync(asset_id)
    world.service.runner.catch_up()
    mirror = world.service.mirror.mirror_of(asset_id)
    assert mirror.next_block == world.anvil.block_number() + 1
    raw = Rpc(world.anvil.url).logs(
        [mirror.token, mirror.identity_registry], mirror.start_block, mirror.next_block - 1
    )
    assert len(raw) > 3
    assert mirrored(world, asset_id) == sorted(
        (int(g["blockNumber"], 16), int(g["logIndex"], 16)) for g in raw
    )


class InjectingRpc(Rpc):
    """Serves, besides the real logs, one log of an unbound contract and one of an unknown event."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url)
        self.token = token

    def logs(self, addresses: Any, from_block: int, to_block: int) -> list[dict[str, Any]]:
        real = super().logs(addresses, from_block, to_block)
        if not real:
            return real
        template = real[-1]
        unbound = {**template, "address": "0x" + "ee" * 20, "logIndex": hex(900)}
        unknown = {**template, "topics": ["0x" + "ab" * 32], "logIndex": hex(901)}
        return [*real, unbound, unknown]


def test_logs_the_mirror_cannot_decode_are_recorded_with_a_reason_and_change_nothing(world: World) -> None:
    asset_id = tokenized(world)
    holding(world.app, asset_id, "alice", 10)
    world.settle()
    token = world.service.mirror.mirror_of(asset_id).token
    world.service.mirror.rpc = InjectingRpc(world.anvil.url, token)
    report = world.service.mirror.sync(asset_id)
    assert report.unrecognised >= 2
    world.service.runner.catch_up()
    with snapshot(world.engine) as conn:
        problems = conn.execute(select(chain_logs.c.problem).where(chain_logs.c.problem.is_not(None))).all()
        total = conn.execute(select(func.count()).select_from(chain_logs)).scalar()
    reasons = " | ".join(p.problem for p in problems)
    assert "unbound address" in reasons and "not an event of token" in reasons
    assert total and total > len(problems)
    world.anvil.mine(CONFIRMATIONS + 1)
    assert world.reconcile(asset_id)["differences"] == []


@pytest.mark.redis
def test_the_jobs_run_on_dramatiq_over_redis(world: World, redis_url: str) -> None:
    from dramatiq.brokers.redis import RedisBroker

    asset_id = tokenized(world)
    holding(world.app, asset_id, "alice", 10)
    world.app.transfer(asset_id, "alice", "bob", 4)
    broker = RedisBroker(url=redis_url, namespace="ledger-test")
    process = WorkerProcess(Jobs(world.service, broker, periods={"carry_out_chain_operations": 0.2}))
    process.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(row.state == DONE for row in world.app.outbox.all_rows()):
                break
            time.sleep(0.2)
    finally:
        process.stop()
        broker.close()
    assert [row.state for row in world.app.outbox.all_rows()] == [DONE, DONE]
    world.anvil.mine(CONFIRMATIONS + 1)
    assert world.reconcile(asset_id)["differences"] == []


@pytest.mark.redis
def test_several_worker_processes_enqueue_each_periodic_job_once_a_period(redis_url: str) -> None:
    """Three schedulers over one Redis: each period one of them enqueues the job, not all three."""
    from dramatiq.brokers.redis import RedisBroker

    period, seconds = 0.2, 1.5
    brokers = [RedisBroker(url=redis_url, namespace="ledger-test") for _ in range(3)]
    enqueued: list[str] = []
    processes = []
    for broker in brokers:
        jobs = Jobs(cast(Any, object()), broker, periods={"reconcile_assets": period})  # nothing is run
        jobs.enqueue = enqueued.append  # type: ignore[method-assign]
        processes.append(WorkerProcess(jobs))
    schedulers = [threading.Thread(target=process._schedule) for process in processes]
    for scheduler in schedulers:
        scheduler.start()
    time.sleep(seconds)
    for process in processes:
        process._stop.set()
    for scheduler in schedulers:
        scheduler.join(timeout=5)
    for broker in brokers:
        broker.close()
    periods = seconds / period  # unclaimed, three schedulers would enqueue about three times this
    assert 2 <= len(enqueued) <= periods + 2, enqueued
