"""A fake of the chain port the outbox worker talks to (`adapters.chain.outbound.TokenClient`).

It keeps balances per (token, wallet), mines every broadcast transaction at once,
counts how often each nonce was executed, and can be told to die right after a
broadcast, to refuse calls, or to be unreachable for a while.
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
            self._execute(suite, call)
            self.executed[nonce] += 1
            self.nonce += 1
            self.mined[tx.tx_hash] = Receipt(tx.tx_hash, 100 + nonce, "0x" + "ab" * 32, True)
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

    def _execute(self, suite: Suite, call: TokenCall) -> None:
        a, token = call.args, suite.token
        self.calls.append((token, call.kind, dict(a)))
        if call.kind == "mint":
            self.balances[token, a["to"]] += a["amount"]
        elif call.kind == "burn":
            self.balances[token, a["user"]] -= a["amount"]
        elif call.kind == "forced_transfer":
            self.balances[token, a["from_"]] -= a["amount"]
            self.balances[token, a["to"]] += a["amount"]
        elif call.kind == "freeze_partial":
            self.frozen[token, a["user"]] += a["amount"]
        elif call.kind == "unfreeze_partial":
            self.frozen[token, a["user"]] -= a["amount"]
        elif call.kind == "recover":
            self.balances[token, a["new"]] += self.balances.pop((token, a["lost"]), 0)
