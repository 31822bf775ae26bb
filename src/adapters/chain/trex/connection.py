"""The agent's connection to the node: web3 over HTTP, the contracts' ABIs, and setup
transactions signed by the agent key, sent and waited for. Every role of the T-REX client
builds on it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import TxParams, TxReceipt

from adapters.chain.artifacts import artifact
from adapters.chain.trex.model import (
    BASE_FEE_HEADROOM,
    SETUP_GAS_MARGIN,
    ChainError,
    ChainRevertedError,
    ChainTimeoutError,
    revert_reason,
)

_POLL_INTERVAL = 0.05  # web3's default (0.1 s) would add up to 50 ms to every outbound operation


@contextmanager
def node_errors(method: str) -> Iterator[None]:
    """An error answer of the node as `ChainError` (web3 raises `Web3RPCError`), so that callers
    treat it like the other chain failures they retry."""
    try:
        yield
    except Web3RPCError as error:
        answer = (error.rpc_response or {}).get("error")
        message = answer.get("message", str(answer)) if isinstance(answer, Mapping) else error.message
        raise ChainError(f"{method}: {message}") from None


class AgentConnection:
    """web3 to one node, acting with the platform's agent key."""

    def __init__(self, rpc_url: str, agent_key: str, *, timeout: float = 10.0) -> None:
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self._account: LocalAccount = Account.from_key(agent_key)
        self.rpc_url = rpc_url
        self._timeout = timeout
        self.agent: str = self._account.address
        with node_errors("eth_chainId"):
            self.chain_id: int = self._w3.eth.chain_id
        self._contract_classes: dict[str, type[Contract]] = {}

    def __repr__(self) -> str:  # never show the key
        return f"TrexClient(agent={self.agent}, chain_id={self.chain_id})"

    # -- contracts -------------------------------------------------------------------------

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
        with node_errors("fees"):
            base_fee = self._w3.eth.get_block("latest").get("baseFeePerGas")
            if base_fee is None:
                return {"gasPrice": self._w3.eth.gas_price}
            tip = self._w3.eth.max_priority_fee
        return {"maxFeePerGas": base_fee * BASE_FEE_HEADROOM + tip, "maxPriorityFeePerGas": tip}

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
    ) -> TxReceipt:
        """Signs, sends and waits for one transaction of `signer`; returns web3's receipt."""
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
        with node_errors("eth_sendRawTransaction"):
            self._w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self._wait_receipt(signed.hash, None)
        if receipt["status"] != 1:
            raise ChainRevertedError(
                f"transaction {receipt['transactionHash'].to_0x_hex()} reverted"
                f" in block {hex(receipt['blockNumber'])}"
            )
        return receipt

    def send(self, to: str | None, data: str) -> TxReceipt:
        """One transaction of the agent carrying `data` (a deployment when `to` is None),
        waited for; its receipt. Raises `ChainRevertedError` if it reverted."""
        return self._execute(self._account, to, data)

    def _agent_execute(
        self, name: str, address: str, function: str, args: Sequence[Any] = ()
    ) -> TxReceipt:
        return self._execute(self._account, address, self._encode(name, function, args))

    def _deploy(self, name: str, *args: Any) -> str:
        """Deploys contract `name` from its artifact; returns its address."""
        data = self._contract_class(name).constructor(*args).data_in_transaction
        receipt = self._execute(self._account, None, data)
        return to_checksum_address(cast(str, receipt["contractAddress"]))

    def _pending_nonce(self, address: str) -> int:
        with node_errors("eth_getTransactionCount"):
            return self._w3.eth.get_transaction_count(to_checksum_address(address), "pending")

    def _wait_receipt(self, tx_hash: str | bytes, timeout: float | None) -> TxReceipt:
        seconds = self._timeout if timeout is None else timeout
        try:
            with node_errors("eth_getTransactionReceipt"):
                return self._w3.eth.wait_for_transaction_receipt(
                    HexBytes(tx_hash), timeout=seconds, poll_latency=_POLL_INTERVAL
                )
        except TimeExhausted:
            tx = HexBytes(tx_hash).to_0x_hex()
            raise ChainTimeoutError(f"transaction {tx} not mined in time") from None

    def block_number(self) -> int:
        with node_errors("eth_blockNumber"):
            return self._w3.eth.block_number
