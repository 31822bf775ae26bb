"""Signed tree heads anchored on a real anvil (SPEC 4.7): sign -> anchor -> `verify --anchored`;
truncation, dropped tables and a consistently recomputed chain each caught against the head
read back from the chain, naming the position; anchors with a bad signature are ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.chain import anchor
from adapters.chain.anvil import DEV_KEYS, Anvil
from adapters.chain.rpc import Rpc
from adapters.chain.trex import TrexClient
from adapters.cli import app as cli
from adapters.worker import Jobs
from ledger.application import LedgerApplication
from ledger.domain.chain import ANCHOR_MIRROR, ChainLog
from ledger.transparency import HeadSigner, TreeHead, load_public_key, sign
from projections.chain import chain_logs
from projections.schema import snapshot
from tests.chain.world import World
from tests.integration.test_store_integrity import RawStore, scenario
from tests.tampering import drop_tables, rewrite_consistently, truncate_tail

pytestmark = pytest.mark.anvil


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def client(anvil: Anvil) -> TrexClient:
    return TrexClient(anvil.url, DEV_KEYS[0])


@pytest.fixture
def deployed(client: TrexClient, anvil: Anvil) -> tuple[str, int]:
    address, block = anchor.deploy(client)
    assert anvil.rpc("eth_getCode", [address, "latest"]) == "0x" + anchor.RUNTIME
    return address, block


def anchored(app: LedgerApplication, key: Ed25519PrivateKey, client: TrexClient, address: str) -> TreeHead:
    """The worker's signing job with anchoring, as it runs without the chain service."""
    rpc = Rpc(client.rpc_url)
    publisher = anchor.AnchorPublisher(client, rpc, address, app.transparency, key.public_key())
    jobs = Jobs(None, StubBroker(), signer=HeadSigner(app.transparency, key), anchor=publisher)
    jobs.actors["sign_tree_head"].fn()
    head = app.transparency.latest_head()
    assert head is not None
    return head


def test_a_signed_head_is_anchored_once_and_the_store_verifies_against_it(
    app: LedgerApplication, key: Ed25519PrivateKey, client: TrexClient, anvil: Anvil,
    deployed: tuple[str, int],
) -> None:
    address, block = deployed
    rpc = Rpc(anvil.url)
    scenario(app)
    head = anchored(app, key, client, address)
    logs = anchor.anchors(rpc, address, block, anvil.block_number())
    assert [a.head for a in logs] == [head]
    assert bytes.fromhex(rpc.call("eth_getTransactionByHash", [logs[0].tx_hash])["input"][2:]) == (
        anchor.canonical(head)
    )
    # the log did not grow: no new head, nothing sent again
    jobs_block = anvil.block_number()
    anchored(app, key, client, address)
    assert anvil.block_number() == jobs_block

    anchor_, result = anchor.verify_anchored(app.admin, rpc, address, key.public_key(), block)
    assert anchor_ is not None and anchor_.head == head
    assert result.ok and result.tree_size == head.tree_size

    # read only from blocks past the confirmation depth
    _, early = anchor.verify_anchored(app.admin, rpc, address, key.public_key(), block, confirmations=3)
    assert not early.ok and "no tree head" in (early.reason or "")
    anvil.mine(3)
    _, final = anchor.verify_anchored(app.admin, rpc, address, key.public_key(), block, confirmations=3)
    assert final.ok


def test_anchors_with_a_bad_signature_or_no_head_are_ignored(
    app: LedgerApplication, key: Ed25519PrivateKey, client: TrexClient, anvil: Anvil,
    deployed: tuple[str, int],
) -> None:
    address, block = deployed
    rpc = Rpc(anvil.url)
    scenario(app)
    head = anchored(app, key, client, address)
    intruder = Ed25519PrivateKey.generate()
    bigger = sign(intruder, head.tree_size + 10, bytes(32), app.clock())
    anchor.publish(client, address, bigger)  # signed by another key
    forged = TreeHead(head.tree_size + 10, "00" * 32, head.timestamp, head.key_id, head.signature)
    anchor.publish(client, address, forged)  # claims the ledger's key, signature does not verify
    client.send(address, "0x" + b"not a head".hex())  # junk
    assert len(anchor.anchors(rpc, address, block, anvil.block_number())) == 3  # the junk is no anchor

    latest = anchor.latest_anchor(rpc, address, key.public_key(), block)
    assert latest is not None and latest.head == head
    _, result = anchor.verify_anchored(app.admin, rpc, address, key.public_key(), block)
    assert result.ok


@pytest.mark.parametrize("tamper", [truncate_tail, drop_tables, rewrite_consistently])
def test_tampering_is_caught_against_the_anchored_head_naming_the_position(
    app: LedgerApplication, store_url: str, key: Ed25519PrivateKey, client: TrexClient, anvil: Anvil,
    deployed: tuple[str, int], tamper: object,
) -> None:
    address, block = deployed
    scenario(app)
    anchored(app, key, client, address)
    position = tamper(app, RawStore(store_url))  # type: ignore[operator]

    _, result = anchor.verify_anchored(app.admin, Rpc(anvil.url), address, key.public_key(), block)
    assert not result.ok
    assert result.first_invalid_position == position


def test_ledger_verify_anchored_reads_the_chain_and_names_the_position(
    tmp_path: Path, key: Ed25519PrivateKey, client: TrexClient, anvil: Anvil, deployed: tuple[str, int],
) -> None:
    address, block = deployed
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "audit.pem").write_bytes(pem)
    env = {
        "LEDGER_DATABASE_URL": url,
        "LEDGER_CHAIN_RPC_URL": anvil.url,
        "LEDGER_CHAIN_AGENT_KEY": DEV_KEYS[0],
        "LEDGER_CHAIN_CONFIRMATIONS": "0",
        "LEDGER_AUDIT_KEY_FILE": str(tmp_path / "audit.pem"),
        "LEDGER_ANCHOR_ADDRESS": address,
        "LEDGER_ANCHOR_FROM_BLOCK": str(block),
    }
    from ledger.config import store_env

    app = LedgerApplication(store_env(url))
    try:
        scenario(app)
    finally:
        app.close()
    runner = CliRunner()
    for command in (["audit", "sign"], ["audit", "anchor", "publish"]):
        done = runner.invoke(cli, command, env=env)
        assert done.exit_code == 0, done.output
    public = key.public_key().public_bytes_raw().hex()
    done = runner.invoke(cli, ["verify", "--anchored", "--public-key", public, "--json"], env=env)
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert body["against"]["ok"] and body["anchor"]["address"].lower() == address.lower()

    app = LedgerApplication(store_env(url))
    try:
        last = truncate_tail(app, RawStore(url))
    finally:
        app.close()
    done = runner.invoke(cli, ["verify", "--anchored", "--json"], env=env)  # the configured key's
    assert done.exit_code == 1
    assert json.loads(done.stdout)["against"]["first_invalid_position"] == last


def test_the_mirror_records_anchors_and_retracts_reorganised_ones(
    world: World, key: Ed25519PrivateKey, deployed: tuple[str, int]
) -> None:
    address, block = deployed
    world.service.anchor_address, world.service.anchor_from_block = address, block
    scenario(world.app)
    head = anchored(world.app, key, world.client, address)
    report = world.mirror()[-1]
    assert report.asset_id == ANCHOR_MIRROR and report.logs == 1 and report.unrecognised == 0
    anchor_ = anchor.anchors(Rpc(world.anvil.url), address, block, world.anvil.block_number())[0]
    recorded = world.app.repository.get(
        ChainLog.create_id(world.service.chain_id, anchor_.block_hash, anchor_.log_index)
    )
    assert isinstance(recorded, ChainLog)
    assert recorded.name == "Anchored" and recorded.asset_id == ANCHOR_MIRROR
    assert recorded.args == head.as_dict()  # tree size, root, timestamp, key id, signature
    assert (recorded.block_number, recorded.tx_hash) == (anchor_.block_number, anchor_.tx_hash)

    world.client.send(address, "0x" + b"not a head".hex())  # anyone may call it: kept with its problem
    report = world.mirror()[-1]
    assert report.logs == 1 and report.unrecognised == 1
    world.anvil.reorg(1)  # the junk's block replaced by an empty one
    report = world.mirror()[-1]
    assert report.reorganisations == 1 and report.retracted == 1
    with snapshot(world.engine) as conn:
        rows = conn.execute(
            select(chain_logs.c.name, chain_logs.c.retracted).where(chain_logs.c.asset_id == ANCHOR_MIRROR)
        ).all()
    assert sorted((r.name, r.retracted) for r in rows) == [(anchor.TOPIC[:64], True), ("Anchored", False)]


def test_the_demo_anchors_then_catches_a_truncated_copy(world: World) -> None:
    from rich.console import Console

    from adapters.demo import TRUNCATED, run_anchor_demo

    scenario(world.app)
    last = world.app.admin.head_position()
    shown = run_anchor_demo(world.service, Console(quiet=True))
    assert shown["verify_anchored"]["ok"] and shown["mirrored_anchor_logs"] == 1
    assert shown["anchored_tree_size"] == last
    copy = shown["truncated_copy"]
    assert copy["hash_chain_ok"]  # the hash chain alone cannot tell
    assert not copy["verify_anchored"]["ok"]
    assert copy["events_kept"] == last - TRUNCATED
    assert copy["verify_anchored"]["first_invalid_position"] == last - TRUNCATED + 1
    assert world.app.admin.verify().ok  # the store itself is whole (and grew by the mirrored anchor)
    assert anchor.verify_anchored(
        world.app.admin, world.service.rpc, shown["anchor_address"], load_public_key(shown["public_key"])
    )[1].ok
