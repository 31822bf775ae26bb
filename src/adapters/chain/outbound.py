"""Carries the outbox's operations out on chain: once each, in the order the ledger owes them.

Never twice: before a transaction is broadcast, its signed bytes, hash and nonce
are stored on the outbox row (state `signed`). A worker that dies after sending
and before recording finds the row signed when it restarts: it looks the hash up
and records the receipt, or re-broadcasts the very same bytes (same nonce, so the
chain can include it at most once). Only when the agent's nonce has moved past it
without the transaction is it known never to have run, and it is signed anew.

One worker sends at a time (the outbox's exclusive lock); operations run in
outbox order, and a transient failure (the node unreachable) stops the run so
that nothing overtakes an operation that is still owed. A call the chain would
refuse (it would revert) is recorded as a failed outcome and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

import pycountry

from adapters.chain.trex import ChainError, ChainRevertedError, Receipt, SignedTx, Suite, TokenCall
from ledger.application import LedgerApplication
from ledger.domain.asset import Asset
from ledger.domain.chain import ChainMirror
from ledger.domain.investor import Investor
from ledger.errors import NotFoundError
from ledger.outbox import DONE, FAILED, PENDING, RECOVER, SIGNED
from ledger.store import OutboxRow

T = TypeVar("T")
MAX_ATTEMPTS = 5  # transient failures of one operation before it is given up (if nothing was sent)
logger = logging.getLogger(__name__)


class TokenClient(Protocol):
    """What carrying out an operation needs of the chain (the T-REX client, or a fake)."""

    chain_id: int

    def ensure_identity(self, suite: Suite, wallet: str, country: int) -> None: ...

    def prepare_recovery(self, suite: Suite, lost: str, new: str) -> None: ...

    def is_verified(self, suite: Suite, wallet: str) -> bool: ...

    def balance_of(self, suite: Suite, wallet: str) -> int: ...

    def next_nonce(self) -> int: ...

    def sign(self, suite: Suite, call: TokenCall, nonce: int) -> SignedTx: ...

    def broadcast(self, tx: SignedTx) -> None: ...

    def receipt(self, tx_hash: str) -> Receipt | None: ...

    def wait_receipt(self, tx_hash: str, timeout: float | None = None) -> Receipt: ...

    def transaction_count(self, block: str = "latest") -> int: ...


class TransientChainError(Exception):
    """The operation could not be carried out now; the run stops and is retried later."""


@dataclass(frozen=True)
class Step:
    """One transaction an outbox row needs on one asset's token."""

    asset_id: str
    suite: Suite
    call: TokenCall | None  # None: nothing to do on this token (e.g. no tokens to recover)
    note: str | None = None


def country_number(alpha2: str) -> int:
    """ISO 3166-1 numeric code of a country (the identity registry's country field)."""
    country = pycountry.countries.get(alpha_2=alpha2)
    if country is None:
        msg = f"unknown country {alpha2}"
        raise ValueError(msg)
    return int(country.numeric)


def suite_of(mirror: ChainMirror) -> Suite:
    """The suite of a mirrored token; addresses not known (a token deployed elsewhere) are empty."""
    known = dict(mirror.contracts)
    fields = [
        "identity_registry_storage",
        "compliance",
        "claim_topics_registry",
        "trusted_issuers_registry",
        "id_factory",
        "claim_issuer",
    ]
    return Suite(
        chain_id=mirror.chain_id,
        token=mirror.token,
        identity_registry=mirror.identity_registry,
        deployed_at_block=int(known.get("deployed_at_block", mirror.start_block)),
        **{name: str(known.get(name) or "") for name in fields},
    )


class OutboxWorker:
    """Takes open outbox rows in order and carries each out on its token(s)."""

    def __init__(
        self,
        app: LedgerApplication,
        client: TokenClient,
        bound_assets: Callable[[], list[str]],
        receipt_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.client = client
        self.bound_assets = bound_assets
        self.receipt_timeout = receipt_timeout

    def run_once(self, limit: int = 100) -> int:
        """Carries out up to `limit` open operations; returns how many were finished.

        Raises `TransientChainError` when the chain cannot be reached: the rows
        stay open and the next run resumes with the same one.
        """
        finished = 0
        with self.app.outbox.exclusive() as held:
            if not held:
                return 0
            for row in self.app.outbox.open_rows(limit):
                self._carry_out(row)
                finished += 1
        return finished

    # ----- one row -----

    def _carry_out(self, row: OutboxRow) -> None:
        try:
            targets = row.targets if row.targets is not None else self._targets(row)
            if row.targets is None and row.asset_id is None:
                self.app.outbox.update(row.seq, targets=targets)  # a recovery's tokens, fixed once
            done, failed = list(row.done_targets), row.error is not None
            left = [asset_id for asset_id in targets if asset_id not in done]
            if not left:
                self.app.outbox.update(row.seq, state=FAILED if failed else DONE)
            for asset_id in left:
                fields = self._carry_out_on(row, asset_id)
                failed = failed or "error" in fields
                done.append(asset_id)
                if len(done) < len(targets):  # the next token's transaction needs the row's room
                    fields.update(state=PENDING, nonce=None, tx_hash=None, raw_tx=None)
                else:
                    fields["state"] = FAILED if failed else DONE
                self.app.outbox.update(row.seq, done_targets=done, **fields)
                row = self._reload(row)
        except (ChainError, OSError, NotFoundError) as error:
            # The node is unreachable or slow, or the token's mirror is not started yet.
            self._transient(row, error)

    def _reload(self, row: OutboxRow) -> OutboxRow:
        fresh = self.app.outbox.get(row.seq)
        assert fresh is not None
        return fresh

    def _transient(self, row: OutboxRow, error: Exception) -> None:
        row = self._reload(row)
        attempts = row.attempts + 1
        if row.state == SIGNED or attempts < MAX_ATTEMPTS:
            # A signed transaction may still be mined: it is never given up on.
            self.app.outbox.update(row.seq, attempts=attempts)
            raise TransientChainError(f"outbox operation {row.seq} ({row.kind}): {error}") from error
        reason = f"gave up after {attempts} attempts: {error}"
        targets = row.targets or ([row.asset_id] if row.asset_id else [])
        for asset_id in targets:
            if asset_id not in row.done_targets:
                self.app.record_chain_outcome(row.seq, row.kind, asset_id, succeeded=False, reason=reason)
        self.app.outbox.update(row.seq, attempts=attempts, state=FAILED, error=reason[:1000])

    def _targets(self, row: OutboxRow) -> list[str]:
        if row.asset_id is not None:
            return [row.asset_id]
        return sorted(self.bound_assets())  # a recovery concerns every token the investor may hold

    def _carry_out_on(self, row: OutboxRow, asset_id: str) -> dict[str, Any]:
        """Carries one step out and records its outcome; returns what the row should note."""
        if row.state == SIGNED and row.tx_hash is not None and row.raw_tx is not None:
            receipt = self._resume(row)
            if receipt is not None:
                return self._record_receipt(row, asset_id, receipt)
        try:
            step = self._step(row, asset_id)
            if step.call is None:
                self.app.record_chain_outcome(row.seq, row.kind, asset_id, succeeded=True, reason=step.note)
                return {}
            self._prepare(row, step)
            signed = self.client.sign(step.suite, step.call, self.client.next_nonce())
        except ChainRevertedError as error:
            reason = f"the chain would refuse it: {error}"
            self.app.record_chain_outcome(row.seq, row.kind, asset_id, succeeded=False, reason=reason)
            return {"error": reason[:1000]}
        self.app.outbox.update(
            row.seq, state=SIGNED, nonce=signed.nonce, tx_hash=signed.tx_hash, raw_tx=signed.raw
        )
        self.client.broadcast(signed)
        return self._record_receipt(
            row, asset_id, self.client.wait_receipt(signed.tx_hash, self.receipt_timeout)
        )

    def _resume(self, row: OutboxRow) -> Receipt | None:
        """The receipt of a transaction a previous worker signed (re-broadcast if need be);
        None if it provably never ran, so that it is signed anew."""
        assert row.tx_hash is not None and row.raw_tx is not None and row.nonce is not None
        receipt = self.client.receipt(row.tx_hash)
        if receipt is None and self.client.transaction_count("latest") > row.nonce:
            receipt = self.client.receipt(row.tx_hash)  # mined meanwhile?
            if receipt is None:
                logger.warning(
                    "outbox %s: nonce %s used by another transaction; signing anew", row.seq, row.nonce
                )
                return None
        if receipt is None:
            self.client.broadcast(SignedTx(row.tx_hash, row.raw_tx, row.nonce))
            receipt = self.client.wait_receipt(row.tx_hash, self.receipt_timeout)
        return receipt

    def _record_receipt(self, row: OutboxRow, asset_id: str, receipt: Receipt) -> dict[str, Any]:
        reason = None if receipt.ok else "reverted on chain"
        self.app.record_chain_outcome(
            row.seq,
            row.kind,
            asset_id,
            succeeded=receipt.ok,
            tx_hash=receipt.tx_hash,
            block_number=receipt.block_number,
            block_hash=receipt.block_hash,
            reason=reason,
        )
        return {"block_number": receipt.block_number} | ({} if reason is None else {"error": reason})

    # ----- what the chain is asked to do -----

    def suite(self, asset_id: str) -> Suite:
        """The suite of the token an asset is bound to, as its mirror recorded it."""
        asset = self.app.get_asset(asset_id)
        if asset.token is None:
            msg = f"asset {asset_id} is not bound to a token"
            raise NotFoundError(msg)
        mirror = self.app.get_mirror(asset.token["chain_id"], asset.token["token_address"])
        return suite_of(mirror)

    def _as_of(self, cls: type[T], ident: UUID, position: int) -> T:
        """An aggregate as it was when the operation was owed (an investor's wallets then)."""
        found: Any = self.app.repository.get(ident, version=self.app.admin.version_at(ident, position))
        assert isinstance(found, cls)
        return found

    def _investor(self, investor_id: str, position: int) -> Investor:
        return self._as_of(Investor, Investor.create_id(investor_id), position)

    def _asset_at(self, asset_id: str, position: int) -> Asset:
        return self._as_of(Asset, Asset.create_id(asset_id), position)

    def _wallet(self, investor_id: str, position: int) -> str:
        return self._investor(investor_id, position).wallets[0]

    def _step(self, row: OutboxRow, asset_id: str) -> Step:
        suite, p, at = self.suite(asset_id), row.payload, row.position
        kind = row.kind
        if kind == RECOVER:
            lost, new = p["lost_wallet"], p["new_wallet"]
            if self.client.balance_of(suite, lost) > 0:
                return Step(asset_id, suite, TokenCall("recover", {"lost": lost, "new": new}))
            # T-REX recovers only tokens; an empty wallet's address freeze follows by hand.
            if self._asset_at(asset_id, at).address_frozen.get(p["investor_id"]):
                return Step(asset_id, suite, TokenCall("set_address_frozen", {"user": new, "frozen": True}))
            return Step(asset_id, suite, None, f"{lost} holds nothing on {asset_id}")
        if kind in ("pause", "unpause"):
            return Step(asset_id, suite, TokenCall(kind, {}))
        if kind == "forced_transfer":
            args: dict[str, Any] = {
                "from_": self._wallet(p["from_investor_id"], at),
                "to": self._wallet(p["to_investor_id"], at),
                "amount": p["quantity"],
            }
            return Step(asset_id, suite, TokenCall(kind, args))
        wallet = self._wallet(p["investor_id"], at)
        if kind == "mint":
            return Step(asset_id, suite, TokenCall(kind, {"to": wallet, "amount": p["quantity"]}))
        if kind == "set_address_frozen":
            return Step(asset_id, suite, TokenCall(kind, {"user": wallet, "frozen": p["frozen"]}))
        return Step(asset_id, suite, TokenCall(kind, {"user": wallet, "amount": p["quantity"]}))

    def _prepare(self, row: OutboxRow, step: Step) -> None:
        """Registers on chain the identities the call needs (idempotent, before signing)."""
        assert step.call is not None
        p, kind = row.payload, row.kind
        receivers = {"mint": "investor_id", "forced_transfer": "to_investor_id"}
        if kind in receivers:
            investor = self._investor(p[receivers[kind]], row.position)
            wallet = step.call.args["to"]
            if not self.client.is_verified(step.suite, wallet):
                if not step.suite.id_factory:
                    raise ChainRevertedError(
                        f"{wallet} is not verified on {step.asset_id}'s token, and its identities "
                        "are not managed by the ledger"
                    )
                self.client.ensure_identity(step.suite, wallet, country_number(investor.country))
        if step.call.kind == "recover":
            self.client.prepare_recovery(step.suite, step.call.args["lost"], step.call.args["new"])
