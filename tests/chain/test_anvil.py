"""The anvil launcher and its dev RPC helpers."""

from __future__ import annotations

import pytest
from eth_account import Account

from adapters.chain.anvil import DEV_KEYS, Anvil

pytestmark = pytest.mark.anvil


def test_dev_keys_are_the_nodes_funded_accounts(anvil: Anvil) -> None:
    accounts = anvil.rpc("eth_accounts", [])
    assert [Account.from_key(k).address.lower() for k in DEV_KEYS] == [a.lower() for a in accounts[:10]]


def test_mining_snapshots_and_rollback(anvil: Anvil) -> None:
    start = anvil.block_number()
    snapshot = anvil.snapshot()
    anvil.mine(5)
    assert anvil.block_number() == start + 5
    anvil.rollback(2)
    assert anvil.block_number() == start + 3
    assert anvil.revert(snapshot)
    assert anvil.block_number() == start


def test_reorg_replaces_blocks_with_other_hashes(anvil: Anvil) -> None:
    anvil.mine(3)
    head = anvil.rpc("eth_getBlockByNumber", ["latest", False])
    sender = Account.from_key(DEV_KEYS[1]).address
    anvil.reorg(2, [({"from": sender, "to": sender, "value": "0x1"}, 0)])
    new_head = anvil.rpc("eth_getBlockByNumber", ["latest", False])
    assert new_head["number"] == head["number"]
    assert new_head["hash"] != head["hash"]
