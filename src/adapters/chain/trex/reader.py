"""Reading a suite's state: the token's balances, freezes and pause, and its identity registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils.address import to_checksum_address

from adapters.chain.trex.connection import AgentConnection
from adapters.chain.trex.model import BlockRef, Suite


class ChainReader(AgentConnection):
    """Reads of a suite's token and identity registry, at a block."""

    def identity_of(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> str | None:
        """The ONCHAINID registered for `wallet` in the suite's identity registry, if any."""
        identity: str = (
            self._contract("IdentityRegistry", suite.identity_registry)
            .functions.identity(to_checksum_address(wallet))
            .call(block_identifier=block)
        )
        return None if int(identity, 16) == 0 else to_checksum_address(identity)

    def _token_read(self, suite: Suite, function: str, args: Sequence[Any], block: BlockRef) -> Any:
        token = self._contract("Token", suite.token)
        return token.get_function_by_name(function)(*args).call(block_identifier=block)

    def balance_of(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> int:
        return int(self._token_read(suite, "balanceOf", [to_checksum_address(wallet)], block))

    def frozen_of(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> int:
        """The holder's partially frozen quantity (not counting an address freeze)."""
        return int(self._token_read(suite, "getFrozenTokens", [to_checksum_address(wallet)], block))

    def paused(self, suite: Suite, block: BlockRef = "latest") -> bool:
        return bool(self._token_read(suite, "paused", [], block))

    def is_verified(self, suite: Suite, wallet: str, block: BlockRef = "latest") -> bool:
        """Whether the registry currently accepts `wallet` as a holder (identity, claims, trusted issuer)."""
        registry = self._contract("IdentityRegistry", suite.identity_registry)
        return bool(registry.functions.isVerified(to_checksum_address(wallet)).call(block_identifier=block))
