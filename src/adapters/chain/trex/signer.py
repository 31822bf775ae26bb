"""Token operations owed by the ledger: signed with a caller-chosen nonce (so that a worker
stores the signed transaction before sending it), broadcast (repeatably: the same signed
transaction never executes twice), and their receipts."""

from __future__ import annotations

from typing import Any, cast

from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from web3.exceptions import TransactionNotFound, Web3RPCError
from web3.types import BlockIdentifier

from adapters.chain.trex.connection import node_errors
from adapters.chain.trex.model import (
    ADDRESS_ARGS,
    TOKEN_CALL_GAS,
    TOKEN_FUNCTIONS,
    ChainRevertedError,
    NonceConflictError,
    Receipt,
    SignedTx,
    Suite,
    TokenCall,
    receipt_of,
)
from adapters.chain.trex.reader import ChainReader


class TokenSigner(ChainReader):
    """Signs and broadcasts the agent's token operations, and follows them to their receipts."""

    def next_nonce(self) -> int:
        """The agent's next nonce, counting transactions still in the pool."""
        return self._pending_nonce(self.agent)

    def transaction_count(self, block: str = "latest") -> int:
        """How many transactions of the agent are mined at `block` (its next nonce once they are)."""
        with node_errors("eth_getTransactionCount"):
            return self._w3.eth.get_transaction_count(self._account.address, cast(BlockIdentifier, block))

    def _token_call_data(self, suite: Suite, call: TokenCall) -> str:
        function, names = TOKEN_FUNCTIONS[call.kind]
        args = [to_checksum_address(call.args[n]) if n in ADDRESS_ARGS else call.args[n] for n in names]
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
        with node_errors("eth_sendRawTransaction"):
            try:
                self._w3.eth.send_raw_transaction(HexStr(tx.raw))
            except Web3RPCError as error:
                message = str(error).lower()
                if "already" in message and ("known" in message or "imported" in message):
                    return
                if "nonce too low" not in message:
                    raise
                if not self._sent(tx.tx_hash):
                    raise NonceConflictError(
                        f"nonce {tx.nonce} of {tx.tx_hash} was used by another transaction"
                    ) from None

    def _sent(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction, pending or mined."""
        try:
            self._w3.eth.get_transaction(HexStr(tx_hash))
        except TransactionNotFound:
            return False
        return True

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction; None while it is pending or unknown."""
        with node_errors("eth_getTransactionReceipt"):
            try:
                return receipt_of(self._w3.eth.get_transaction_receipt(HexStr(tx_hash)))
            except TransactionNotFound:
                return None

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> Receipt:
        """Waits until the transaction is mined (default: the client's timeout)."""
        return receipt_of(self._wait_receipt(tx_hash, timeout))

    def agent_call(self, suite: Suite, call: TokenCall) -> Receipt:
        """Executes a token operation directly (outside the ledger's outbox): sign, send, wait."""
        signed = self.sign(suite, call, self.next_nonce())
        self.broadcast(signed)
        receipt = self.wait_receipt(signed.tx_hash)
        if not receipt.ok:
            raise ChainRevertedError(f"{call.kind} reverted in block {receipt.block_number}")
        return receipt
