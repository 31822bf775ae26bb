"""Token operations owed by the ledger: signed with a caller-chosen nonce (so that a worker
stores the signed transaction before sending it), broadcast (repeatably: the same signed
transaction never executes twice), and their receipts."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address

from adapters.chain.trex.model import (
    ADDRESS_ARGS,
    TOKEN_CALL_GAS,
    TOKEN_FUNCTIONS,
    ChainError,
    ChainRevertedError,
    NonceConflictError,
    Receipt,
    SignedTx,
    Suite,
    TokenCall,
    raw_receipt,
)
from adapters.chain.trex.reader import ChainReader


class TokenSigner(ChainReader):
    """Signs and broadcasts the agent's token operations, and follows them to their receipts."""

    def next_nonce(self) -> int:
        """The agent's next nonce, counting transactions still in the pool."""
        return self._pending_nonce(self.agent)

    def transaction_count(self, block: str = "latest") -> int:
        """How many transactions of the agent are mined at `block` (its next nonce once they are)."""
        return int(self._rpc("eth_getTransactionCount", [self.agent, block]), 16)

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
        return raw_receipt(raw)

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> Receipt:
        """Waits until the transaction is mined (default: the client's timeout)."""
        return raw_receipt(self._wait_raw_receipt(tx_hash, timeout))

    def agent_call(self, suite: Suite, call: TokenCall) -> Receipt:
        """Executes a token operation directly (outside the ledger's outbox): sign, send, wait."""
        signed = self.sign(suite, call, self.next_nonce())
        self.broadcast(signed)
        receipt = self.wait_receipt(signed.tx_hash)
        if not receipt.ok:
            raise ChainRevertedError(f"{call.kind} reverted in block {receipt.block_number}")
        return receipt
