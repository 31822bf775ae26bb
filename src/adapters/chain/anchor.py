"""Anchoring signed tree heads on the chain (SPEC 4.7): a minimal contract that logs its calldata.

No Solidity compiler is needed: the contract is eleven EVM instructions, assembled here by hand.
Runtime code (44 bytes):

    36            CALLDATASIZE
    6000 6000     PUSH1 0, PUSH1 0
    37            CALLDATACOPY       memory[0:size] = calldata
    7f <TOPIC>    PUSH32 TOPIC
    36 6000       CALLDATASIZE, PUSH1 0
    a1            LOG1(0, size, TOPIC)
    00            STOP

Init code (12 bytes): `602c 600c 6000 39 602c 6000 f3` (CODECOPY the 44 bytes after it, RETURN them).
TOPIC = keccak256("ledger-sth-anchor-v1"). Anyone may call the contract: a log is an anchor only
if its data is a signed tree head whose Ed25519 signature verifies with the ledger's public key.

Calldata (and so the log's data): the head's canonical JSON, UTF-8, keys sorted, no spaces:
`{"key_id":..,"root":..,"signature":..,"timestamp":..,"tree_size":..}`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from adapters.chain.rpc import Rpc
from adapters.chain.trex import TrexClient
from ledger.errors import ValidationError
from ledger.store import StoreAdmin
from ledger.transparency import (
    HeadVerification,
    TransparencyLog,
    TreeHead,
    head_is_signed_by,
    key_id,
    verify_against,
)

TOPIC = "0x" + keccak(b"ledger-sth-anchor-v1").hex()
RUNTIME = "366000600037" + "7f" + TOPIC[2:] + "366000a100"
INIT = "602c600c600039602c6000f3"
CREATION = "0x" + INIT + RUNTIME
assert len(RUNTIME) == 2 * 0x2C and len(INIT) == 2 * 0x0C


def canonical(head: TreeHead) -> bytes:
    return json.dumps(head.as_dict(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Anchor:
    """A signed head as a log of the anchor contract (its signature not checked yet)."""

    head: TreeHead
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "head": self.head.as_dict()}


def decode(log: dict[str, Any]) -> Anchor:
    """An anchor contract's log as an `Anchor`; `ValidationError` if its data is no signed head."""
    topics = list(log.get("topics") or [])
    if topics[:1] != [TOPIC]:
        raise ValidationError("not an anchor log")
    try:
        head = TreeHead.from_dict(json.loads(bytes.fromhex(str(log["data"])[2:]).decode()))
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("the anchor's data is not a signed tree head") from None
    return Anchor(
        head,
        int(str(log["blockNumber"]), 16),
        str(log["blockHash"]),
        str(log["transactionHash"]),
        int(str(log["logIndex"]), 16),
        str(log["address"]),
    )


def deploy(client: TrexClient) -> tuple[str, int]:
    """Deploys the anchor contract as the agent; its address and block."""
    receipt = client.send(None, CREATION)
    return str(receipt["contractAddress"]), receipt["blockNumber"]


def publish(client: TrexClient, address: str, head: TreeHead) -> TxReceipt:
    """Sends a signed head to the anchor contract; the transaction's receipt."""
    return client.send(address, "0x" + canonical(head).hex())


def anchors(rpc: Rpc, address: str, from_block: int, to_block: int) -> list[Anchor]:
    """The decodable anchors in these blocks, in chain order, read straight from the node."""
    if to_block < from_block:
        return []
    logs = rpc.call(
        "eth_getLogs",
        [{"address": address, "topics": [TOPIC], "fromBlock": hex(from_block), "toBlock": hex(to_block)}],
    )
    found = []
    for log in logs or []:
        if log.get("removed"):
            continue
        try:
            found.append(decode(log))
        except ValidationError:
            continue  # anyone can call the contract: what is no signed head is no anchor
    return found


def latest_anchor(
    rpc: Rpc, address: str, public: Ed25519PublicKey, from_block: int = 0, confirmations: int = 0
) -> Anchor | None:
    """The anchored head of the largest tree signed by this key, among the blocks at least
    `confirmations` deep; heads whose signature does not verify are ignored."""
    to_block = rpc.block_number() - confirmations
    valid = [a for a in anchors(rpc, address, from_block, to_block) if head_is_signed_by(a.head, public)]
    return max(valid, key=lambda a: (a.head.tree_size, a.block_number), default=None)


def verify_anchored(
    admin: StoreAdmin,
    rpc: Rpc,
    address: str,
    public: Ed25519PublicKey,
    from_block: int = 0,
    confirmations: int = 0,
) -> tuple[Anchor | None, HeadVerification]:
    """Checks the store against the latest anchored head read from the chain (never from the
    ledger's own records, which whoever rewrote the database could rewrite too)."""
    anchor = latest_anchor(rpc, address, public, from_block, confirmations)
    if anchor is None:
        reason = f"no tree head signed by key {key_id(public)} is anchored at {address} (final blocks)"
        return None, HeadVerification(False, 0, 0, None, reason)
    return anchor, verify_against(admin, anchor.head, public)


class AnchorPublisher:
    """The worker's anchoring: sends this key's newest signed head to the anchor contract
    unless a head at least as large is anchored already."""

    def __init__(
        self, client: TrexClient, rpc: Rpc, address: str, log: TransparencyLog, public: Ed25519PublicKey,
        from_block: int = 0,
    ) -> None:
        self.client, self.rpc, self.address, self.log = client, rpc, address, log
        self.public, self.from_block = public, from_block

    def publish_latest(self) -> tuple[TreeHead, str] | None:
        head = self.log.latest_head(key_id(self.public))
        if head is None:
            return None
        anchored = latest_anchor(self.rpc, self.address, self.public, self.from_block)
        if anchored is not None and anchored.head.tree_size >= head.tree_size:
            return None
        receipt = publish(self.client, self.address, head)
        return head, receipt["transactionHash"].to_0x_hex()
