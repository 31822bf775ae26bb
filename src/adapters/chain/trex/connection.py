"""The agent's connection to the node: JSON-RPC, the contracts' ABIs, and setup transactions
signed by the agent key, sent and waited for. Every role of the T-REX client builds on it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint, TxParams

from adapters.chain.artifacts import artifact
from adapters.chain.trex.model import (
    BASE_FEE_HEADROOM,
    SETUP_GAS_MARGIN,
    ChainError,
    ChainRevertedError,
    ChainTimeoutError,
    revert_reason,
)

_POLL_INTERVAL = 0.05


class AgentConnection:
    """JSON-RPC to one node, acting with the platform's agent key."""

    def __init__(self, rpc_url: str, agent_key: str, *, timeout: float = 10.0) -> None:
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self._account: LocalAccount = Account.from_key(agent_key)
        self.rpc_url = rpc_url
        self._timeout = timeout
        self.agent: str = self._account.address
        self.chain_id: int = int(self._rpc("eth_chainId", []), 16)
        self._contract_classes: dict[str, type[Contract]] = {}

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

    # -- sending ---------------------------------------------------------------------------

    def _simulate(self, tx: Mapping[str, Any]) -> None:
        try:
            self._w3.eth.call(cast(TxParams, tx), "pending")
        except ContractLogicError as error:
            raise ChainRevertedError(revert_reason(error)) from None

    def _estimate(self, tx: Mapping[str, Any]) -> int:
        try:
            return int(self._w3.eth.estimate_gas(cast(TxParams, tx), "pending") * SETUP_GAS_MARGIN)
        except ContractLogicError as error:
            raise ChainRevertedError(revert_reason(error)) from None

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

    def block_number(self) -> int:
        return int(self._rpc("eth_blockNumber", []), 16)
