"""The worker's periodic signing of tree heads (SPEC 4.7): a head only when the log grew since
the last one, with or without the chain adapter, in-process and over the real Redis."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dramatiq.brokers.stub import StubBroker

from adapters.worker import Jobs, WorkerProcess
from ledger.application import LedgerApplication
from ledger.transparency import HeadSigner, check
from tests.integration.test_store_integrity import scenario


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_the_signing_job_signs_only_when_the_log_grew(app: LedgerApplication, key: Ed25519PrivateKey) -> None:
    jobs = Jobs(None, StubBroker(), signer=HeadSigner(app.transparency, key))
    assert set(jobs.actors) == {"sign_tree_head"}  # no chain adapter: the signing job alone
    assert set(jobs.periods) == {"sign_tree_head"}
    sign = jobs.actors["sign_tree_head"].fn

    sign()
    assert app.transparency.signed_heads() == []  # an empty log: nothing to sign

    scenario(app)
    sign()
    first = app.transparency.signed_heads()
    assert [h.tree_size for h in first] == [app.admin.head_position()]
    assert check(key.public_key(), first[0], None).ok

    sign()
    sign()
    assert app.transparency.signed_heads() == first  # the log did not grow: no new head

    app.transfer("TOLL-JKT-01", "bob", "alice", 3)
    sign()
    heads = app.transparency.signed_heads()
    assert len(heads) == 2 and heads[0].tree_size > first[0].tree_size
    assert heads[1] == first[0]


def test_another_keys_head_does_not_stop_this_key_from_signing(
    app: LedgerApplication, key: Ed25519PrivateKey
) -> None:
    scenario(app)
    other = app.transparency.sign_head(Ed25519PrivateKey.generate(), app.clock())
    assert HeadSigner(app.transparency, key).sign_if_grown() is not None
    assert HeadSigner(app.transparency, key).sign_if_grown() is None
    assert {h.key_id for h in app.transparency.signed_heads()} == {other.key_id, HeadSigner(
        app.transparency, key).key_id}


@pytest.mark.redis
def test_the_worker_signs_periodically_over_redis_without_the_chain(
    app: LedgerApplication, key: Ed25519PrivateKey, redis_url: str
) -> None:
    from dramatiq.brokers.redis import RedisBroker

    scenario(app)
    broker = RedisBroker(url=redis_url, namespace="ledger-test")
    jobs = Jobs(None, broker, periods={"sign_tree_head": 0.2}, signer=HeadSigner(app.transparency, key))
    process = WorkerProcess(jobs)
    process.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not app.transparency.signed_heads():
            time.sleep(0.1)
        app.transfer("TOLL-JKT-01", "bob", "alice", 3)
        size = app.admin.head_position()
        while time.monotonic() < deadline and app.transparency.signed_heads()[0].tree_size < size:
            time.sleep(0.1)
    finally:
        process.stop()
        broker.close()
    heads = app.transparency.signed_heads()
    assert heads[0].tree_size == size
    assert len(heads) == 2  # one head per growth, however many periods passed
