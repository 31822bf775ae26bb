"""The T-REX client with what only the tests need: reads the ledger never makes, a country
change, logs by address, and a holder's own transfer signed with its key (a holder acting
outside the ledger, which the mirror must notice)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from adapters.chain.trex import TOKEN_CALL_GAS, BlockRef, Receipt, Suite, TrexClient
from adapters.chain.trex.model import receipt_of


class TrexTestClient(TrexClient):
    def is_frozen(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> bool:
        """Whether the whole address is frozen."""
        return bool(self._token_read(suite, "isFrozen", [to_checksum_address(wallet)], block))

    def total_supply(self, suite: Suite, block: BlockRef = "latest") -> int:
        return int(self._token_read(suite, "totalSupply", [], block))

    def update_country(self, suite: Suite, wallet: str, country: int) -> None:
        """Records that a registered holder now resides in `country` (idempotent)."""
        wallet = to_checksum_address(wallet)
        registry = self._contract("IdentityRegistry", suite.identity_registry)
        if registry.functions.investorCountry(wallet).call() != country:
            self._agent_execute(
                "IdentityRegistry", suite.identity_registry, "updateCountry", [wallet, country]
            )

    def get_logs(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[dict[str, Any]]:
        """web3's logs (ready for `LogDecoder.decode`) of `addresses` in a block range."""
        addresses = [to_checksum_address(a) for a in addresses]
        logs = self._w3.eth.get_logs({"address": addresses, "fromBlock": from_block, "toBlock": to_block})
        return [dict(log) for log in logs]

    def transfer_from_wallet(self, suite: Suite, wallet_key: str, to: str, amount: int) -> Receipt:
        """A holder's own ERC-20 transfer, signed with its key; the agent pays its gas if it has none."""
        holder: LocalAccount = Account.from_key(wallet_key)
        needed = TOKEN_CALL_GAS * _max_fee(self._fees())
        balance = self._w3.eth.get_balance(holder.address)
        if balance < needed:
            self._execute(self._account, holder.address, "0x", gas=21_000, value=needed - balance)
        data = self._encode("Token", "transfer", [to_checksum_address(to), amount])
        return receipt_of(self._execute(holder, suite.token, data, gas=TOKEN_CALL_GAS))


def _max_fee(fees: Mapping[str, int]) -> int:
    return fees.get("maxFeePerGas", fees.get("gasPrice", 0))
