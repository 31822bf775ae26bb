"""A fake of the chain port the outbox worker talks to (`adapters.chain.outbound.TokenClient`).

It keeps balances, frozen tokens and address freezes per (token, wallet) and the
pause state per token, following T-REX: a forced transfer or a burn uses free
tokens first and unfreezes frozen ones only as far as needed; a recovery moves
the lost wallet's balance, frozen tokens and address freeze to the new wallet
(and needs tokens to recover). Signing simulates the call and refuses one that
would revert, as the real client does. It mines every broadcast transaction at
once, counts how often each nonce was executed, and can be told to die right
after a broadcast, to refuse calls, or to be unreachable for a while.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

from adapters.chain.trex import ChainRevertedError, Receipt, SignedTx, Suite, TokenCall


class WorkerDiedError(BaseException):
    """Stands for the worker process dying (not an Exception: nothing may catch it)."""


class FakeChain:
    chain_id = 31337

    def __init__(self) -> None:
        self.balances: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.frozen: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.address_frozen: set[tuple[str, str]] = set()
        self.paused_tokens: set[str] = set()
        self.verified: set[tuple[str, str]] = set()
        self.refused: set[str] = set()  # wallets a call to which would revert
        self.nonce = 0
        self.signed: dict[str, tuple[Suite, TokenCall, int]] = {}
        self.mined: dict[str, Receipt] = {}
        self.executed: Counter[int] = Counter()  # nonce -> times executed
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.die_after_broadcast = False
        self.lose_next_broadcast = False
        self.unreachable = 0  # the next n calls to broadcast fail as if the node were down

    # ----- the port -----

    def ensure_identity(self, suite: Suite, wallet: str, country: int) -> None:
        self.verified.add((suite.token, wallet))

    def prepare_recovery(self, suite: Suite, lost: str, new: str) -> None:
        """Adding the key is idempotent on chain too."""

    def is_verified(self, suite: Suite, wallet: str) -> bool:
        return (suite.token, wallet) in self.verified

    def balance_of(self, suite: Suite, wallet: str) -> int:
        return self.balances[suite.token, wallet]

    def next_nonce(self) -> int:
        return self.nonce

    def transaction_count(self, block: str = "latest") -> int:
        return self.nonce

    def sign(self, suite: Suite, call: TokenCall, nonce: int) -> SignedTx:
        wallets = [v for k, v in call.args.items() if k in ("to", "user", "new")]
        if any(w in self.refused for w in wallets):
            raise ChainRevertedError("Identity is not verified.")
        problem = self._revert_reason(suite.token, call)
        if problem is not None:
            raise ChainRevertedError(problem)
        digest = hashlib.sha256(f"{nonce}:{suite.token}:{call.kind}:{sorted(call.args.items())}".encode())
        tx_hash = "0x" + digest.hexdigest()
        self.signed[tx_hash] = (suite, call, nonce)
        return SignedTx(tx_hash, "0x" + digest.hexdigest() * 2, nonce)

    def broadcast(self, tx: SignedTx) -> None:
        if self.unreachable:
            self.unreachable -= 1
            raise ConnectionError("node unreachable")
        if self.lose_next_broadcast:
            self.lose_next_broadcast = False
            raise WorkerDiedError
        if tx.tx_hash not in self.mined and tx.nonce == self.nonce:
            suite, call, nonce = self.signed[tx.tx_hash]
            ok = self._revert_reason(suite.token, call) is None  # a reverted call still uses its nonce
            if ok:
                self._execute(suite, call)
            self.executed[nonce] += 1
            self.nonce += 1
            self.mined[tx.tx_hash] = Receipt(tx.tx_hash, 100 + nonce, "0x" + "ab" * 32, ok)
        if self.die_after_broadcast:
            self.die_after_broadcast = False
            raise WorkerDiedError

    def receipt(self, tx_hash: str) -> Receipt | None:
        return self.mined.get(tx_hash)

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> Receipt:
        receipt = self.mined.get(tx_hash)
        if receipt is None:
            raise TimeoutError(f"{tx_hash} not mined")
        return receipt

    # ----- the token -----

    def _revert_reason(self, token: str, call: TokenCall) -> str | None:
        """Why T-REX would revert the call now (its `require` messages), or None."""
        a = call.args
        if call.kind == "mint" and (token, a["to"]) not in self.verified:
            return "Identity is not verified."
        if call.kind == "burn" and self.balances[token, a["user"]] < a["amount"]:
            return "cannot burn more than balance"
        if call.kind == "forced_transfer":
            if self.balances[token, a["from_"]] < a["amount"]:
                return "sender balance too low"
            if (token, a["to"]) not in self.verified:
                return "Transfer not possible"
        if call.kind == "freeze_partial" and (
            self.balances[token, a["user"]] < self.frozen[token, a["user"]] + a["amount"]
        ):
            return "Amount exceeds available balance"
        if call.kind == "unfreeze_partial" and self.frozen[token, a["user"]] < a["amount"]:
            return "Amount should be less than or equal to frozen tokens"
        if call.kind == "pause" and token in self.paused_tokens:
            return "Pausable: paused"
        if call.kind == "unpause" and token not in self.paused_tokens:
            return "Pausable: not paused"
        if call.kind == "recover" and self.balances[token, a["lost"]] == 0:
            return "no tokens to recover"
        return None

    def _take(self, token: str, wallet: str, amount: int) -> None:
        """Takes tokens from a wallet, unfreezing frozen ones only as far as free ones fall short."""
        free = self.balances[token, wallet] - self.frozen[token, wallet]
        self.frozen[token, wallet] -= max(0, amount - free)
        self.balances[token, wallet] -= amount

    def _execute(self, suite: Suite, call: TokenCall) -> None:
        a, token = call.args, suite.token
        self.calls.append((token, call.kind, dict(a)))
        if call.kind == "mint":
            self.balances[token, a["to"]] += a["amount"]
        elif call.kind == "burn":
            self._take(token, a["user"], a["amount"])
        elif call.kind == "forced_transfer":
            self._take(token, a["from_"], a["amount"])
            self.balances[token, a["to"]] += a["amount"]
        elif call.kind == "freeze_partial":
            self.frozen[token, a["user"]] += a["amount"]
        elif call.kind == "unfreeze_partial":
            self.frozen[token, a["user"]] -= a["amount"]
        elif call.kind == "set_address_frozen":
            if a["frozen"]:
                self.address_frozen.add((token, a["user"]))
            else:
                self.address_frozen.discard((token, a["user"]))
        elif call.kind == "pause":
            self.paused_tokens.add(token)
        elif call.kind == "unpause":
            self.paused_tokens.discard(token)
        elif call.kind == "recover":
            self._recover(token, a["lost"], a["new"])

    def _recover(self, token: str, lost: str, new: str) -> None:
        """T-REX `recoveryAddress`: the new wallet takes the lost one's identity, tokens,
        frozen tokens and address freeze (the lost wallet stays address-frozen)."""
        quantity, frozen = self.balances[token, lost], self.frozen[token, lost]
        self.verified.add((token, new))
        self._take(token, lost, quantity)  # a forced transfer of everything: unfreezes it all
        self.balances[token, new] += quantity
        self.frozen[token, new] += frozen
        if (token, lost) in self.address_frozen:
            self.address_frozen.add((token, new))
        self.verified.discard((token, lost))
