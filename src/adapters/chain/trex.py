"""The ERC-3643 (T-REX 4.1.6) client: deploys token suites, onboards identities, signs token operations.

The platform is custodial and holds one agent key: it owns every suite, is the agent of the
token and of the identity registry, signs KYC claims for the platform's claim issuer and is the
management key of every investor's ONCHAINID. Investors' keys are never needed (except by the
test helper `transfer_from_wallet`, which acts for a holder outside the ledger).

Outbound token operations are split into `sign` (deterministic, with a caller-chosen nonce, so a
worker can store the signed transaction before sending it) and `broadcast` (repeatable: sending
the same signed transaction again never executes it twice). Setup operations (`deploy_suite`,
`ensure_identity`, `prepare_recovery`) check chain state before each step, so repeating one
after a crash finishes it instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint, TxParams

from adapters.chain.artifacts import artifact
from adapters.chain.events import LogDecoder

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
_POLL_INTERVAL = 0.05

BlockRef = int | Literal["latest", "safe", "finalized", "pending", "earliest"]

# kind -> (token function, argument names in call order); "recover" also needs the lost identity.
_TOKEN_FUNCTIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
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
TOKEN_CALL_KINDS = frozenset(_TOKEN_FUNCTIONS)
_ADDRESS_ARGS = frozenset({"to", "user", "from_", "lost", "new"})
_IMPLEMENTATIONS = (  # the order of TREXImplementationAuthority's TREXContracts struct
    "Token",
    "ClaimTopicsRegistry",
    "IdentityRegistry",
    "IdentityRegistryStorage",
    "TrustedIssuersRegistry",
    "ModularCompliance",
)


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
    """One outbound token operation with wallets already resolved (see `_TOKEN_FUNCTIONS` for args)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _TOKEN_FUNCTIONS:
            raise ValueError(f"unknown token call kind {self.kind!r}")
        missing = [name for name in _TOKEN_FUNCTIONS[self.kind][1] if name not in self.args]
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


@dataclass(frozen=True)
class BlockHeader:
    """What a reorganisation check needs of a block."""

    number: int
    hash: str
    parent_hash: str


@dataclass(frozen=True)
class _Infrastructure:
    """Contracts shared by every suite a client deploys."""

    id_factory: str
    claim_issuer: str
    trex_factory: str
    compliance_module: str


def _key_hash(address: str) -> bytes:
    """The ERC-734 key of an address: keccak256(abi.encode(address))."""
    return keccak(abi_encode(["address"], [address]))


def _revert_reason(error: ContractLogicError) -> str:
    message = error.message or str(error)
    return message.removeprefix("execution reverted: ").removeprefix("execution reverted") or "reverted"


def _raw_receipt(raw: Mapping[str, Any]) -> Receipt:
    return Receipt(
        tx_hash=raw["transactionHash"],
        block_number=int(raw["blockNumber"], 16),
        block_hash=raw["blockHash"],
        ok=int(raw["status"], 16) == 1,
    )


class TrexClient:
    """The chain port's implementation over JSON-RPC, acting as the platform's agent."""

    def __init__(self, rpc_url: str, agent_key: str, *, timeout: float = 10.0) -> None:
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self._account: LocalAccount = Account.from_key(agent_key)
        self.rpc_url = rpc_url
        self._timeout = timeout
        self.agent: str = self._account.address
        self.chain_id: int = int(self._rpc("eth_chainId", []), 16)
        self._contract_classes: dict[str, type[Contract]] = {}
        self._infrastructure: _Infrastructure | None = None

    def __repr__(self) -> str:  # never show the key
        return f"TrexClient(agent={self.agent}, chain_id={self.chain_id})"

    # -- JSON-RPC and contracts ------------------------------------------------------------

    def _rpc(self, method: str, params: Sequence[Any]) -> Any:
        response = self._w3.provider.make_request(RPCEndpoint(method), list(params))
        if "error" in response:
            error = response["error"]
            message = error.get("message", str(error)) if isinstance(error, Mapping) else str(error)
            raise ChainError(f"{method}: {message}")
        return response.get("result")

    def _contract_class(self, name: str) -> type[Contract]:
        if name not in self._contract_classes:
            loaded = artifact(name)
            self._contract_classes[name] = self._w3.eth.contract(
                abi=cast(Any, loaded["abi"]), bytecode=loaded["bytecode"]
            )
        return self._contract_classes[name]

    def _contract(self, name: str, address: str) -> Contract:
        return self._contract_class(name)(address=to_checksum_address(address))

    def _encode(self, name: str, function: str, args: Sequence[Any] = ()) -> str:
        data: str = self._contract_class(name).encode_abi(function, args=list(args))
        return data

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fees: the current tip, and a fee cap that survives the base fee doubling meanwhile.

        Legacy gas prices are avoided: anvil's price oracle follows paid tips, so any margin
        on a legacy price feeds back into the next suggestion and compounds.
        """
        latest = self._rpc("eth_getBlockByNumber", ["latest", False])
        if latest.get("baseFeePerGas") is None:
            return {"gasPrice": int(self._rpc("eth_gasPrice", []), 16)}
        tip = int(self._rpc("eth_maxPriorityFeePerGas", []), 16)
        max_fee = int(latest["baseFeePerGas"], 16) * BASE_FEE_HEADROOM + tip
        return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}

    @staticmethod
    def _max_fee(fees: Mapping[str, int]) -> int:
        return fees.get("maxFeePerGas", fees.get("gasPrice", 0))

    # -- sending ---------------------------------------------------------------------------

    def _simulate(self, tx: Mapping[str, Any]) -> None:
        try:
            self._w3.eth.call(cast(TxParams, tx), "pending")
        except ContractLogicError as error:
            raise ChainRevertedError(_revert_reason(error)) from None

    def _estimate(self, tx: Mapping[str, Any]) -> int:
        try:
            return int(self._w3.eth.estimate_gas(cast(TxParams, tx), "pending") * SETUP_GAS_MARGIN)
        except ContractLogicError as error:
            raise ChainRevertedError(_revert_reason(error)) from None

    def _execute(
        self, signer: LocalAccount, to: str | None, data: str, *, gas: int | None = None, value: int = 0
    ) -> dict[str, Any]:
        """Signs, sends and waits for one transaction of `signer`; returns the raw receipt."""
        tx: dict[str, Any] = {"from": signer.address, "data": data, "value": value}
        if to is not None:
            tx["to"] = to_checksum_address(to)
        if gas is None:
            tx["gas"] = self._estimate(tx)
        else:
            self._simulate(tx)
            tx["gas"] = gas
        tx["nonce"] = self._pending_nonce(signer.address)
        tx.update(self._fees())
        tx["chainId"] = self.chain_id
        del tx["from"]
        signed = signer.sign_transaction(tx)
        self._rpc("eth_sendRawTransaction", [signed.raw_transaction.to_0x_hex()])
        raw = self._wait_raw_receipt(signed.hash.to_0x_hex(), None)
        if int(raw["status"], 16) != 1:
            raise ChainRevertedError(
                f"transaction {raw['transactionHash']} reverted in block {raw['blockNumber']}"
            )
        return raw

    def send(self, to: str | None, data: str) -> dict[str, Any]:
        """One transaction of the agent carrying `data` (a deployment when `to` is None),
        waited for; its raw receipt. Raises `ChainRevertedError` if it reverted."""
        return self._execute(self._account, to, data)

    def _agent_execute(
        self, name: str, address: str, function: str, args: Sequence[Any] = ()
    ) -> dict[str, Any]:
        return self._execute(self._account, address, self._encode(name, function, args))

    def _deploy(self, name: str, *args: Any) -> str:
        """Deploys contract `name` from its artifact; returns its address."""
        data = self._contract_class(name).constructor(*args).data_in_transaction
        raw = self._execute(self._account, None, data)
        return to_checksum_address(raw["contractAddress"])

    def _pending_nonce(self, address: str) -> int:
        return int(self._rpc("eth_getTransactionCount", [address, "pending"]), 16)

    def _wait_raw_receipt(self, tx_hash: str, timeout: float | None) -> dict[str, Any]:
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        while True:
            raw = self._rpc("eth_getTransactionReceipt", [tx_hash])
            if raw is not None and raw.get("blockNumber") is not None:
                return cast(dict[str, Any], raw)
            if time.monotonic() >= deadline:
                raise ChainTimeoutError(f"transaction {tx_hash} not mined in time")
            time.sleep(_POLL_INTERVAL)

    # -- suite deployment ------------------------------------------------------------------

    def _shared_infrastructure(self) -> _Infrastructure:
        """Implementations, authorities, factories, claim issuer and compliance module, deployed once."""
        if self._infrastructure is not None:
            return self._infrastructure
        implementations = [self._deploy(name) for name in _IMPLEMENTATIONS]
        authority = self._deploy("TREXImplementationAuthority", True, ZERO_ADDRESS, ZERO_ADDRESS)
        self._agent_execute(
            "TREXImplementationAuthority",
            authority,
            "addAndUseTREXVersion",
            [TREX_VERSION, tuple(implementations)],
        )
        identity_implementation = self._deploy("Identity", self.agent, True)
        identity_authority = self._deploy("ImplementationAuthority", identity_implementation)
        id_factory = self._deploy("IdFactory", identity_authority)
        claim_issuer = self._deploy("ClaimIssuer", self.agent)
        self._agent_execute(
            "ClaimIssuer",
            claim_issuer,
            "addKey",
            [_key_hash(self.agent), CLAIM_SIGNER_PURPOSE, ECDSA_KEY_TYPE],
        )
        module_implementation = self._deploy("CountryAllowModule")
        module = self._deploy(
            "ModuleProxy", module_implementation, self._encode("CountryAllowModule", "initialize")
        )
        trex_factory = self._deploy("TREXFactory", authority, id_factory)
        self._agent_execute("IdFactory", id_factory, "addTokenFactory", [trex_factory])
        self._infrastructure = _Infrastructure(id_factory, claim_issuer, trex_factory, module)
        return self._infrastructure

    def deploy_suite(
        self, *, name: str, symbol: str, decimals: int, countries: Sequence[int], salt: str
    ) -> Suite:
        """Deploys a T-REX token with its registries and compliance through the T-REX factory.

        The agent owns everything and is agent of the token and the identity registry; holders
        must carry the platform's KYC claim and live in one of `countries` (ISO 3166 numeric).
        `salt` must be new for this client's factory. The token stays paused, as `init` leaves it.
        """
        infra = self._shared_infrastructure()
        settings = self._encode("CountryAllowModule", "batchAllowCountries", [list(countries)])
        token_details = (
            self.agent,
            name,
            symbol,
            decimals,
            ZERO_ADDRESS,
            ZERO_ADDRESS,
            [self.agent],
            [self.agent],
            [infra.compliance_module],
            [bytes.fromhex(settings[2:])],
        )
        claim_details = ([KYC_TOPIC], [infra.claim_issuer], [[KYC_TOPIC]])
        raw = self._agent_execute(
            "TREXFactory", infra.trex_factory, "deployTREXSuite", [salt, token_details, claim_details]
        )
        decoder = LogDecoder({infra.trex_factory: "trex_factory"})
        factory_events = [
            decoder.decode(log) for log in raw["logs"] if log["address"].lower() == infra.trex_factory.lower()
        ]
        deployed = next(event.args for event in factory_events if event.name == "TREXSuiteDeployed")
        return Suite(
            chain_id=self.chain_id,
            token=deployed["_token"],
            identity_registry=deployed["_ir"],
            identity_registry_storage=deployed["_irs"],
            compliance=deployed["_mc"],
            claim_topics_registry=deployed["_ctr"],
            trusted_issuers_registry=deployed["_tir"],
            id_factory=infra.id_factory,
            claim_issuer=infra.claim_issuer,
            deployed_at_block=int(raw["blockNumber"], 16),
        )

    # -- identities ------------------------------------------------------------------------

    def identity_of(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> str | None:
        """The ONCHAINID registered for `wallet` in the suite's identity registry, if any."""
        identity: str = (
            self._contract("IdentityRegistry", suite.identity_registry)
            .functions.identity(to_checksum_address(wallet))
            .call(block_identifier=block)
        )
        return None if int(identity, 16) == 0 else to_checksum_address(identity)

    def ensure_identity(self, suite: Suite, wallet: str, country: int) -> None:
        """Makes `wallet` a verified holder of the suite, resident of `country` (ISO 3166 numeric).

        Creates its ONCHAINID (managed by the agent, as the platform is custodial), adds the
        platform's KYC claim and registers it. Idempotent: each step is skipped when the chain
        already shows it done.
        """
        wallet = to_checksum_address(wallet)
        registry = self._contract("IdentityRegistry", suite.identity_registry)
        if registry.functions.contains(wallet).call():
            return
        identity = self._ensure_onchain_id(suite, wallet)
        self._ensure_kyc_claim(suite, identity)
        self._agent_execute(
            "IdentityRegistry", suite.identity_registry, "registerIdentity", [wallet, identity, country]
        )

    def _ensure_onchain_id(self, suite: Suite, wallet: str) -> str:
        factory = self._contract("IdFactory", suite.id_factory)
        identity: str = factory.functions.getIdentity(wallet).call()
        if int(identity, 16) == 0:
            self._agent_execute(
                "IdFactory",
                suite.id_factory,
                "createIdentityWithManagementKeys",
                [wallet, wallet.lower(), [_key_hash(self.agent)]],
            )
            identity = factory.functions.getIdentity(wallet).call()
        return to_checksum_address(identity)

    def _ensure_kyc_claim(self, suite: Suite, identity: str) -> None:
        claim_id = keccak(abi_encode(["address", "uint256"], [suite.claim_issuer, KYC_TOPIC]))
        claim = self._contract("Identity", identity).functions.getClaim(claim_id).call()
        if int(claim[2], 16) != 0:  # (topic, scheme, issuer, signature, data, uri)
            return
        digest = keccak(abi_encode(["address", "uint256", "bytes"], [identity, KYC_TOPIC, KYC_CLAIM_DATA]))
        signature = self._account.sign_message(encode_defunct(primitive=digest)).signature
        self._agent_execute(
            "Identity",
            identity,
            "addClaim",
            [KYC_TOPIC, ECDSA_CLAIM_SCHEME, suite.claim_issuer, bytes(signature), KYC_CLAIM_DATA, ""],
        )

    def update_country(self, suite: Suite, wallet: str, country: int) -> None:
        """Records that a registered holder now resides in `country` (idempotent)."""
        wallet = to_checksum_address(wallet)
        registry = self._contract("IdentityRegistry", suite.identity_registry)
        if registry.functions.investorCountry(wallet).call() != country:
            self._agent_execute(
                "IdentityRegistry", suite.identity_registry, "updateCountry", [wallet, country]
            )

    def prepare_recovery(self, suite: Suite, lost: str, new: str) -> None:
        """Lets `new` replace `lost`: makes it a management key of the lost wallet's ONCHAINID (idempotent).

        `new` must not be registered in the suite yet: recovery registers it with the lost identity.
        """
        identity = self.identity_of(suite, lost)
        if identity is None:
            raise ChainRevertedError(f"wallet {lost} has no identity in the registry")
        key = _key_hash(to_checksum_address(new))
        if not self._contract("Identity", identity).functions.keyHasPurpose(key, MANAGEMENT_PURPOSE).call():
            self._agent_execute("Identity", identity, "addKey", [key, MANAGEMENT_PURPOSE, ECDSA_KEY_TYPE])

    # -- token operations ------------------------------------------------------------------

    def next_nonce(self) -> int:
        """The agent's next nonce, counting transactions still in the pool."""
        return self._pending_nonce(self.agent)

    def transaction_count(self, block: str = "latest") -> int:
        """How many transactions of the agent are mined at `block` (its next nonce once they are)."""
        return int(self._rpc("eth_getTransactionCount", [self.agent, block]), 16)

    def _token_call_data(self, suite: Suite, call: TokenCall) -> str:
        function, names = _TOKEN_FUNCTIONS[call.kind]
        args = [to_checksum_address(call.args[n]) if n in _ADDRESS_ARGS else call.args[n] for n in names]
        if call.kind == "recover":
            identity = self.identity_of(suite, args[0])
            if identity is None:
                raise ChainRevertedError(f"wallet {args[0]} has no identity in the registry")
            args.append(identity)
        return self._encode("Token", function, args)

    def sign(self, suite: Suite, call: TokenCall, nonce: int) -> SignedTx:
        """Signs `call` on the suite's token with `nonce`; `ChainRevertedError` if it would revert now."""
        data = self._token_call_data(suite, call)
        self._simulate({"from": self.agent, "to": suite.token, "data": data})
        tx: dict[str, Any] = {
            "to": suite.token,
            "data": data,
            "value": 0,
            "gas": TOKEN_CALL_GAS,
            "nonce": nonce,
            "chainId": self.chain_id,
            **self._fees(),
        }
        signed = self._account.sign_transaction(tx)
        return SignedTx(tx_hash=signed.hash.to_0x_hex(), raw=signed.raw_transaction.to_0x_hex(), nonce=nonce)

    def broadcast(self, tx: SignedTx) -> None:
        """Sends a signed transaction; sending one already in the pool or already mined is harmless.

        Raises `NonceConflictError` when its nonce went to another transaction.
        """
        try:
            self._rpc("eth_sendRawTransaction", [tx.raw])
        except ChainError as error:
            message = str(error).lower()
            if "already" in message and ("known" in message or "imported" in message):
                return
            if "nonce too low" in message:
                if self._rpc("eth_getTransactionByHash", [tx.tx_hash]) is not None:
                    return
                raise NonceConflictError(
                    f"nonce {tx.nonce} of {tx.tx_hash} was used by another transaction"
                ) from None
            raise

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction; None while it is pending or unknown."""
        raw = self._rpc("eth_getTransactionReceipt", [tx_hash])
        if raw is None or raw.get("blockNumber") is None:
            return None
        return _raw_receipt(raw)

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> Receipt:
        """Waits until the transaction is mined (default: the client's timeout)."""
        return _raw_receipt(self._wait_raw_receipt(tx_hash, timeout))

    def agent_call(self, suite: Suite, call: TokenCall) -> Receipt:
        """Executes a token operation directly (outside the ledger's outbox): sign, send, wait."""
        signed = self.sign(suite, call, self.next_nonce())
        self.broadcast(signed)
        receipt = self.wait_receipt(signed.tx_hash)
        if not receipt.ok:
            raise ChainRevertedError(f"{call.kind} reverted in block {receipt.block_number}")
        return receipt

    def transfer_from_wallet(self, suite: Suite, wallet_key: str, to: str, amount: int) -> Receipt:
        """A holder's own ERC-20 transfer, signed with its key; the agent pays its gas if it has none."""
        holder: LocalAccount = Account.from_key(wallet_key)
        needed = TOKEN_CALL_GAS * self._max_fee(self._fees())
        balance = int(self._rpc("eth_getBalance", [holder.address, "latest"]), 16)
        if balance < needed:
            self._execute(self._account, holder.address, "0x", gas=21_000, value=needed - balance)
        data = self._encode("Token", "transfer", [to_checksum_address(to), amount])
        return _raw_receipt(self._execute(holder, suite.token, data, gas=TOKEN_CALL_GAS))

    # -- reads -----------------------------------------------------------------------------

    def _token_read(self, suite: Suite, function: str, args: Sequence[Any], block: BlockRef) -> Any:
        token = self._contract("Token", suite.token)
        return token.get_function_by_name(function)(*args).call(block_identifier=block)

    def balance_of(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> int:
        return int(self._token_read(suite, "balanceOf", [to_checksum_address(wallet)], block))

    def frozen_of(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> int:
        """The holder's partially frozen quantity (not counting an address freeze)."""
        return int(self._token_read(suite, "getFrozenTokens", [to_checksum_address(wallet)], block))

    def is_frozen(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> bool:
        """Whether the whole address is frozen."""
        return bool(self._token_read(suite, "isFrozen", [to_checksum_address(wallet)], block))

    def paused(self, suite: Suite, block: BlockRef = "latest") -> bool:
        return bool(self._token_read(suite, "paused", [], block))

    def total_supply(self, suite: Suite, block: BlockRef = "latest") -> int:
        return int(self._token_read(suite, "totalSupply", [], block))

    def is_verified(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> bool:
        """Whether the registry currently accepts `wallet` as a holder (identity, claims, trusted issuer)."""
        registry = self._contract("IdentityRegistry", suite.identity_registry)
        return bool(registry.functions.isVerified(to_checksum_address(wallet)).call(block_identifier=block))

    # -- blocks and logs (for the mirror) ---------------------------------------------------

    def block_number(self) -> int:
        return int(self._rpc("eth_blockNumber", []), 16)

    def block_header(self, block: BlockRef) -> BlockHeader | None:
        """Number, hash and parent hash of a block; None when the node has no such block."""
        tag = hex(block) if isinstance(block, int) else block
        raw = self._rpc("eth_getBlockByNumber", [tag, False])
        if raw is None:
            return None
        return BlockHeader(number=int(raw["number"], 16), hash=raw["hash"], parent_hash=raw["parentHash"])

    def get_logs(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[dict[str, Any]]:
        """Raw JSON-RPC logs (hex strings, ready for `LogDecoder.decode`) of `addresses` in a block range."""
        raw = self._rpc(
            "eth_getLogs",
            [{"address": list(addresses), "fromBlock": hex(from_block), "toBlock": hex(to_block)}],
        )
        return cast(list[dict[str, Any]], raw)
