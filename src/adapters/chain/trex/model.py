"""What the T-REX client's roles share: the suite a token is, the token operations the ledger
owes the chain, signed transactions and receipts, the errors the chain reports, and constants."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

KYC_TOPIC = 1
KYC_CLAIM_DATA = b"KYC approved by the platform"
TREX_VERSION = (4, 1, 6)
TOKEN_CALL_GAS = 1_000_000  # a T-REX transfer takes about 243k; recovery about 500k
BASE_FEE_HEADROOM = 2  # a signed transaction may wait for its broadcast while the base fee rises
SETUP_GAS_MARGIN = 1.2
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MANAGEMENT_PURPOSE = 1
CLAIM_SIGNER_PURPOSE = 3
ECDSA_KEY_TYPE = 1
ECDSA_CLAIM_SCHEME = 1

BlockRef = int | Literal["latest", "safe", "finalized", "pending", "earliest"]

# kind -> (token function, argument names in call order); "recover" also needs the lost identity.
TOKEN_FUNCTIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "mint": ("mint", ("to", "amount")),
    "burn": ("burn", ("user", "amount")),
    "forced_transfer": ("forcedTransfer", ("from_", "to", "amount")),
    "freeze_partial": ("freezePartialTokens", ("user", "amount")),
    "unfreeze_partial": ("unfreezePartialTokens", ("user", "amount")),
    "set_address_frozen": ("setAddressFrozen", ("user", "frozen")),
    "pause": ("pause", ()),
    "unpause": ("unpause", ()),
    "recover": ("recoveryAddress", ("lost", "new")),
}
TOKEN_CALL_KINDS = frozenset(TOKEN_FUNCTIONS)
ADDRESS_ARGS = frozenset({"to", "user", "from_", "lost", "new"})


class ChainError(Exception):
    """A chain operation failed for a reason the node reported."""


class ChainRevertedError(ChainError):
    """A call reverts (or reverted when mined); `reason` is the contract's message, if any."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonceConflictError(ChainError):
    """The nonce of a signed transaction was used by a different transaction: it can never be mined."""


class ChainTimeoutError(ChainError, TimeoutError):
    """A transaction was not mined within the allowed time."""


@dataclass(frozen=True)
class Suite:
    """The contracts of one deployed T-REX token (EIP-55 addresses), as bound to an asset."""

    chain_id: int
    token: str
    identity_registry: str
    identity_registry_storage: str
    compliance: str
    claim_topics_registry: str
    trusted_issuers_registry: str
    id_factory: str
    claim_issuer: str
    deployed_at_block: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Suite:
        return cls(
            chain_id=int(d["chain_id"]),
            token=to_checksum_address(d["token"]),
            identity_registry=to_checksum_address(d["identity_registry"]),
            identity_registry_storage=to_checksum_address(d["identity_registry_storage"]),
            compliance=to_checksum_address(d["compliance"]),
            claim_topics_registry=to_checksum_address(d["claim_topics_registry"]),
            trusted_issuers_registry=to_checksum_address(d["trusted_issuers_registry"]),
            id_factory=to_checksum_address(d["id_factory"]),
            claim_issuer=to_checksum_address(d["claim_issuer"]),
            deployed_at_block=int(d["deployed_at_block"]),
        )

    def contract_kinds(self) -> dict[str, str]:
        """The contracts whose events concern this token (for `LogDecoder`): the suite and its claim issuer.

        The shared IdFactory is left out: its events are about every suite's investors.
        """
        return {
            self.token: "token",
            self.identity_registry: "identity_registry",
            self.identity_registry_storage: "identity_registry_storage",
            self.compliance: "compliance",
            self.claim_topics_registry: "claim_topics_registry",
            self.trusted_issuers_registry: "trusted_issuers_registry",
            self.claim_issuer: "claim_issuer",
        }


@dataclass(frozen=True)
class TokenCall:
    """One outbound token operation with wallets already resolved (see `TOKEN_FUNCTIONS` for args)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TOKEN_FUNCTIONS:
            raise ValueError(f"unknown token call kind {self.kind!r}")
        missing = [name for name in TOKEN_FUNCTIONS[self.kind][1] if name not in self.args]
        if missing:
            raise ValueError(f"token call {self.kind} lacks {', '.join(missing)}")


@dataclass(frozen=True)
class SignedTx:
    """A signed agent transaction, ready to (re)broadcast; `raw` is 0x hex."""

    tx_hash: str
    raw: str
    nonce: int


@dataclass(frozen=True)
class Receipt:
    """Where a transaction was mined and whether it succeeded."""

    tx_hash: str
    block_number: int
    block_hash: str
    ok: bool


def key_hash(address: str) -> bytes:
    """The ERC-734 key of an address: keccak256(abi.encode(address))."""
    return keccak(abi_encode(["address"], [address]))


def revert_reason(error: ContractLogicError) -> str:
    message = error.message or str(error)
    return message.removeprefix("execution reverted: ").removeprefix("execution reverted") or "reverted"


def receipt_of(receipt: TxReceipt) -> Receipt:
    return Receipt(
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=receipt["blockNumber"],
        block_hash=receipt["blockHash"].to_0x_hex(),
        ok=receipt["status"] == 1,
    )
