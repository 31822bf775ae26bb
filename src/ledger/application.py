"""The application service: one method per command of the register.

Each method validates its input, then hands a command to the group committer,
which runs the rules against the current aggregates and appends the resulting
events atomically (one unit of work per use case). Each returns an `Outcome`:
the new ids and the global position of the command's last event.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.utils import Environment, EnvType, get_topic

from ledger.actor import Actor, current_actor
from ledger.commit import Command, GroupCommitter, Outcome, UnitOfWork
from ledger.domain import values as v
from ledger.domain.apikey import ApiKey, ApiKeyTerms
from ledger.domain.asset import Asset
from ledger.domain.chain import (
    ANCHOR_MIRROR,
    ChainLog,
    ChainMirror,
    ChainOperation,
    MirrorMovedError,
    Reconciliation,
)
from ledger.domain.commands import (
    AssetStatusChange,
    DistributionDeclaration,
    DistributionPayment,
    HolderFreeze,
    InvestmentCancellation,
    InvestmentOrder,
    KycDecision,
    OfferingChange,
    PaymentConfirmation,
    ProposalClosing,
    ProposalSubmission,
    RedemptionOrder,
    TokenBinding,
    TokenFreeze,
    TransferOrder,
    ValuationReport,
    Vote,
    WalletAddition,
    WalletRecovery,
)
from ledger.domain.distribution import Distribution
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor, WalletClaim
from ledger.domain.proposal import Proposal
from ledger.domain.terms import AssetTerms, InvestorRegistration
from ledger.environment import library_environment
from ledger.errors import (
    AlreadyExistsError,
    IdempotencyKeyReusedError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from ledger.store import LedgerPostgresRecorder, OutboxStore, StoreAdmin
from ledger.transparency import TransparencyLog

A = TypeVar("A")
SNAPSHOTS_KEPT = 64


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


class LedgerApplication(Application[UUID]):
    """The register of record: commands in, immutable events out."""

    name = "Ledger"
    is_snapshotting_enabled = True  # long streams load from a snapshot (`ledger.snapshots`)

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(env)
        self.clock = clock
        self.admin = StoreAdmin(self.recorder)
        self.outbox = OutboxStore(self.admin)
        self.committer = GroupCommitter(self, self.admin, clock)
        self.transparency = TransparencyLog(self.admin)
        if self.factory.env.get("CREATE_TABLE", "y").lower() in ("y", "yes", "t", "true", "on", "1"):
            self.transparency.create_tables()
        self._snapshots: OrderedDict[tuple[str, int], dict[str, int]] = OrderedDict()

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The library's settings come from the ledger alone: a process environment that
        would change its write or read path refuses to start (`ledger.environment`)."""
        return library_environment(type(self), name, env, os.environ)

    def close(self) -> None:
        if isinstance(self.recorder, LedgerPostgresRecorder):
            self.recorder.release_append_connection()
        super().close()

    def _execute(
        self,
        name: str,
        payload: dict[str, Any],
        run: Callable[[UnitOfWork], dict[str, Any]],
        idempotency_key: str | None,
    ) -> Outcome:
        actor = current_actor()
        if idempotency_key is not None:
            idempotency_key = self._scoped(idempotency_key, actor)
        return self.committer.execute(Command(name, payload, run, idempotency_key, actor))

    @staticmethod
    def _scoped(idempotency_key: str, actor: Actor | None) -> str:
        """The idempotency key as stored: scoped to the caller (`Actor.scope`)."""
        v.text(idempotency_key, "Idempotency-Key")
        return idempotency_key if actor is None else actor.scope(idempotency_key)

    # ----- lookups (copies of current aggregate state; the read side answers queries) -----

    def get_asset(self, asset_id: str) -> Asset:
        return self._read(Asset, Asset.create_id(v.asset_id(asset_id)), f"asset {asset_id}")

    def get_investor(self, investor_id: str) -> Investor:
        return self._read(Investor, Investor.create_id(v.investor_id(investor_id)), f"investor {investor_id}")

    def get_investment(self, investment_id: UUID | str) -> Investment:
        return self._read(
            Investment, v.uuid_text(investment_id, "investment_id"), f"investment {investment_id}"
        )

    def get_distribution(self, distribution_id: UUID | str) -> Distribution:
        ident = v.uuid_text(distribution_id, "distribution_id")
        return self._read(Distribution, ident, f"distribution {distribution_id}")

    def get_proposal(self, proposal_id: UUID | str) -> Proposal:
        return self._read(Proposal, v.uuid_text(proposal_id, "proposal_id"), f"proposal {proposal_id}")

    def _read(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            aggregate = self.committer.read(aggregate_id)
        except NotFoundError:
            raise NotFoundError(f"{what} not found") from None
        if not isinstance(aggregate, cls):
            raise NotFoundError(f"{what} not found")
        return aggregate

    # ----- assets -----

    def register_asset(
        self, terms: AssetTerms | Mapping[str, Any], idempotency_key: str | None = None
    ) -> Outcome:
        """Registers an asset (draft) on `terms` (a mapping is parsed into them first)."""
        checked = terms if isinstance(terms, AssetTerms) else AssetTerms.parse(terms)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            if uow.exists(Asset.create_id(checked.asset_id)):
                raise AlreadyExistsError(f"asset {checked.asset_id} already exists")
            uow.add(Asset.register(checked))
            return {"asset_id": checked.asset_id}

        return self._execute("register_asset", checked.payload(), run, idempotency_key)

    def _on_asset(
        self,
        name: str,
        asset_id: str,
        act: Callable[[Asset, UnitOfWork], None],
        payload: dict[str, Any],
        idempotency_key: str | None,
    ) -> Outcome:
        asset_id = v.asset_id(asset_id)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            act(uow.get(Asset, Asset.create_id(asset_id), f"asset {asset_id}"), uow)
            return {"asset_id": asset_id}

        return self._execute(name, {"asset_id": asset_id, **payload}, run, idempotency_key)

    def approve_asset(self, asset_id: str, idempotency_key: str | None = None) -> Outcome:
        change = AssetStatusChange(asset_id)
        return self._on_asset(
            "approve_asset", change.asset_id, lambda a, _: a.approve(), change.payload(), idempotency_key
        )

    def set_offering(self, asset_id: str, open_: Any, idempotency_key: str | None = None) -> Outcome:
        change = OfferingChange(asset_id, open_)
        return self._on_asset(
            "set_offering",
            change.asset_id,
            lambda a, _: a.set_offering(change.open),
            change.payload(),
            idempotency_key,
        )

    def pause_asset(self, asset_id: str, idempotency_key: str | None = None) -> Outcome:
        change = AssetStatusChange(asset_id)
        return self._on_asset(
            "pause_asset", change.asset_id, lambda a, _: a.pause(), change.payload(), idempotency_key
        )

    def unpause_asset(self, asset_id: str, idempotency_key: str | None = None) -> Outcome:
        change = AssetStatusChange(asset_id)
        return self._on_asset(
            "unpause_asset", change.asset_id, lambda a, _: a.unpause(), change.payload(), idempotency_key
        )

    def bind_token(
        self,
        asset_id: str,
        chain_id: Any,
        token_address: Any,
        identity_registry: Any,
        idempotency_key: str | None = None,
    ) -> Outcome:
        binding = TokenBinding(asset_id, chain_id, token_address, identity_registry)
        return self._on_asset(
            "bind_token",
            binding.asset_id,
            lambda a, _: a.bind_token(binding.chain_id, binding.token_address, binding.identity_registry),
            binding.payload(),
            idempotency_key,
        )

    def _on_holder(
        self,
        name: str,
        asset_id: str,
        investor_id: str,
        act: Callable[[Asset, str], None],
        payload: dict[str, Any],
        idempotency_key: str | None,
    ) -> Outcome:
        holder = v.investor_id(investor_id)

        def on_asset(asset: Asset, uow: UnitOfWork) -> None:
            uow.get(Investor, Investor.create_id(holder), f"investor {holder}")
            act(asset, holder)

        return self._on_asset(name, asset_id, on_asset, {"investor_id": holder, **payload}, idempotency_key)

    def freeze_tokens(
        self, asset_id: str, investor_id: str, quantity: Any, idempotency_key: str | None = None
    ) -> Outcome:
        order = TokenFreeze(asset_id, investor_id, quantity)
        return self._on_holder(
            "freeze_tokens",
            order.asset_id,
            order.investor_id,
            lambda a, i: a.freeze_tokens(i, order.quantity),
            order.payload(),
            idempotency_key,
        )

    def unfreeze_tokens(
        self, asset_id: str, investor_id: str, quantity: Any, idempotency_key: str | None = None
    ) -> Outcome:
        order = TokenFreeze(asset_id, investor_id, quantity)
        return self._on_holder(
            "unfreeze_tokens",
            order.asset_id,
            order.investor_id,
            lambda a, i: a.unfreeze_tokens(i, order.quantity),
            order.payload(),
            idempotency_key,
        )

    def freeze_investor(self, asset_id: str, investor_id: str, idempotency_key: str | None = None) -> Outcome:
        order = HolderFreeze(asset_id, investor_id)
        return self._on_holder(
            "freeze_investor",
            order.asset_id,
            order.investor_id,
            lambda a, i: a.freeze_address(i),
            order.payload(),
            idempotency_key,
        )

    def unfreeze_investor(
        self, asset_id: str, investor_id: str, idempotency_key: str | None = None
    ) -> Outcome:
        order = HolderFreeze(asset_id, investor_id)
        return self._on_holder(
            "unfreeze_investor",
            order.asset_id,
            order.investor_id,
            lambda a, i: a.unfreeze_address(i),
            order.payload(),
            idempotency_key,
        )

    def record_valuation(
        self,
        asset_id: str,
        price_per_token: Any,
        valued_at: Any,
        source: Any,
        method: Any = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Records a valuation of an asset (appraisal, NAV report); a correction is a new one."""
        report = ValuationReport(asset_id, price_per_token, valued_at, source, method)
        return self._on_asset(
            "record_valuation",
            report.asset_id,
            lambda a, uow: a.value(
                report.price_per_token, report.valued_at, report.source, report.method, uow.now
            ),
            report.payload(),
            idempotency_key,
        )

    # ----- investors -----

    def register_investor(
        self,
        investor: InvestorRegistration | str,
        country: Any = None,
        wallet: Any = None,
        accredited: Any = False,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Registers an investor: a registration, or its plain values (checked into one)."""
        if isinstance(investor, InvestorRegistration):
            registration = investor
        else:
            registration = InvestorRegistration(investor, country, wallet, accredited)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            if uow.exists(Investor.create_id(registration.investor_id)):
                raise AlreadyExistsError(f"investor {registration.investor_id} already exists")
            claim_wallet(uow, registration.wallet, registration.investor_id)
            uow.add(Investor.register(registration))
            return {"investor_id": registration.investor_id}

        return self._execute("register_investor", registration.payload(), run, idempotency_key)

    def _on_investor(
        self,
        name: str,
        investor_id: str,
        act: Callable[[Investor, UnitOfWork], None],
        payload: dict[str, Any],
        idempotency_key: str | None,
    ) -> Outcome:
        ident = v.investor_id(investor_id)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            act(uow.get(Investor, Investor.create_id(ident), f"investor {ident}"), uow)
            return {"investor_id": ident}

        return self._execute(name, {"investor_id": ident, **payload}, run, idempotency_key)

    def update_kyc(
        self, investor_id: str, status: Any, expires_at: Any = None, idempotency_key: str | None = None
    ) -> Outcome:
        decision = KycDecision(investor_id, status, expires_at)
        return self._on_investor(
            "update_kyc",
            decision.investor_id,
            lambda i, _: i.update_kyc(decision.status, decision.expires_at),
            decision.payload(),
            idempotency_key,
        )

    def add_wallet(self, investor_id: str, wallet: Any, idempotency_key: str | None = None) -> Outcome:
        addition = WalletAddition(investor_id, wallet)
        address = addition.wallet

        def act(investor: Investor, uow: UnitOfWork) -> None:
            if address in investor.wallets:
                raise AlreadyExistsError(f"wallet {address} is already one of {investor.investor_id}'s")
            claim_wallet(uow, address, investor.investor_id)
            investor.add_wallet(address)

        return self._on_investor("add_wallet", addition.investor_id, act, addition.payload(), idempotency_key)

    def recover_wallet(
        self, investor_id: str, lost_wallet: Any, new_wallet: Any, idempotency_key: str | None = None
    ) -> Outcome:
        recovery = WalletRecovery(investor_id, lost_wallet, new_wallet)
        lost, new = recovery.lost_wallet, recovery.new_wallet

        def act(investor: Investor, uow: UnitOfWork) -> None:
            if lost not in investor.wallets:
                raise NotFoundError(f"wallet {lost} is not one of {investor.investor_id}'s")
            claim_wallet(uow, new, investor.investor_id)
            investor.recover_wallet(lost, new)

        return self._on_investor(
            "recover_wallet", recovery.investor_id, act, recovery.payload(), idempotency_key
        )

    # ----- investments -----

    def place_investment(
        self, investor_id: str, asset_id: str, amount: Any, idempotency_key: str | None = None
    ) -> Outcome:
        order = InvestmentOrder(investor_id, asset_id, amount)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            asset = uow.get(Asset, Asset.create_id(order.asset_id), f"asset {order.asset_id}")
            investor = uow.get(Investor, Investor.create_id(order.investor_id), f"investor {investor_id}")
            purchase = asset.check_investment(
                investor.investor_id, investor.eligible_for(asset, uow.now), order.amount
            )
            investment = uow.add(
                Investment.place(investor.investor_id, asset.asset_id, order.amount, purchase)
            )
            asset.reserve(investment.id, investor.investor_id, purchase.quantity)
            return {
                "investment_id": str(investment.id),
                "status": investment.status,
                "quantity": purchase.quantity,
                "accepted_amount": purchase.accepted_amount,
                "refund_amount": purchase.refund_amount,
            }

        return self._execute("place_investment", order.payload(), run, idempotency_key)

    def _on_investment(
        self,
        name: str,
        investment_id: Any,
        act: Callable[[Investment, Asset, UnitOfWork], None],
        payload: dict[str, Any],
        idempotency_key: str | None,
    ) -> Outcome:
        ident = v.uuid_text(investment_id, "investment_id")

        def run(uow: UnitOfWork) -> dict[str, Any]:
            investment = uow.get(Investment, ident, f"investment {ident}")
            asset = uow.get(Asset, Asset.create_id(investment.asset_id), f"asset {investment.asset_id}")
            act(investment, asset, uow)
            return {"investment_id": str(ident), "status": investment.status}

        return self._execute(name, {"investment_id": str(ident), **payload}, run, idempotency_key)

    def confirm_payment(
        self, investment_id: Any, payment_ref: Any, idempotency_key: str | None = None
    ) -> Outcome:
        confirmation = PaymentConfirmation(investment_id, payment_ref)

        def act(investment: Investment, asset: Asset, uow: UnitOfWork) -> None:
            investment.check_pending()
            asset.check_reservation(investment.investor_id, investment.quantity)
            investment.confirm_payment(confirmation.payment_ref)
            asset.issue(investment.id, investment.investor_id, investment.quantity, uow.now)

        return self._on_investment(
            "confirm_payment", confirmation.investment_id, act, confirmation.payload(), idempotency_key
        )

    def cancel_investment(self, investment_id: Any, idempotency_key: str | None = None) -> Outcome:
        cancellation = InvestmentCancellation(investment_id)

        def act(investment: Investment, asset: Asset, _: UnitOfWork) -> None:
            investment.check_pending()
            asset.check_reservation(investment.investor_id, investment.quantity)
            investment.cancel()
            asset.release(investment.id, investment.investor_id, investment.quantity)

        return self._on_investment(
            "cancel_investment", cancellation.investment_id, act, cancellation.payload(), idempotency_key
        )

    # ----- transfers and redemptions -----

    def transfer(
        self,
        asset_id: str,
        from_investor_id: str,
        to_investor_id: str,
        quantity: Any,
        forced: Any = False,
        idempotency_key: str | None = None,
    ) -> Outcome:
        order = TransferOrder(asset_id, from_investor_id, to_investor_id, quantity, forced)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            asset = uow.get(Asset, Asset.create_id(order.asset_id), f"asset {asset_id}")
            uow.get(Investor, Investor.create_id(order.from_investor_id), f"investor {from_investor_id}")
            receiver = uow.get(
                Investor, Investor.create_id(order.to_investor_id), f"investor {to_investor_id}"
            )
            if order.forced:
                asset.force_transfer(order.from_investor_id, order.to_investor_id, order.quantity)
            else:
                asset.transfer(
                    order.from_investor_id,
                    order.to_investor_id,
                    order.quantity,
                    receiver.eligible_for(asset, uow.now),
                    uow.now,
                )
            return {"asset_id": asset.asset_id}

        return self._execute("transfer", order.payload(), run, idempotency_key)

    def redeem(
        self, asset_id: str, investor_id: str, quantity: Any, idempotency_key: str | None = None
    ) -> Outcome:
        order = RedemptionOrder(asset_id, investor_id, quantity)
        return self._on_holder(
            "redeem",
            order.asset_id,
            order.investor_id,
            lambda a, i: a.redeem(i, order.quantity),
            {"quantity": order.quantity},
            idempotency_key,
        )

    # ----- distributions -----

    def declare_distribution(
        self, asset_id: str, amount: Any, record_position: Any = None, idempotency_key: str | None = None
    ) -> Outcome:
        order = DistributionDeclaration(asset_id, amount, record_position)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            asset = uow.get(Asset, Asset.create_id(order.asset_id), f"asset {asset_id}")
            position = order.record_position
            if position is None:
                version, holdings = asset.version, asset.balances
            else:
                version, holdings = self._holdings_at_position(asset, position)
            distribution = uow.add(
                Distribution.declare(asset.asset_id, order.amount, position, version, holdings)
            )
            return {"distribution_id": str(distribution.id)}

        return self._execute("declare_distribution", order.payload(), run, idempotency_key)

    def _holdings_at_position(self, asset: Asset, position: int) -> tuple[int, dict[str, int]]:
        if position > self.admin.head_position():
            raise ValidationError("record_position is beyond the head of the ledger")
        version = self.admin.version_at(asset.id, position)
        if version is None:
            return 0, {}
        return version, self._holdings_at_version(asset.asset_id, version)

    def _holdings_at_version(self, asset_id: str, version: int) -> dict[str, int]:
        """Balances of an asset at one of its committed versions (cached; history never changes)."""
        key = (asset_id, version)
        if key not in self._snapshots:
            past: Asset = self.repository.get(Asset.create_id(asset_id), version=version)
            assert isinstance(past, Asset)
            self._snapshots[key] = dict(past.balances)
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)
        self._snapshots.move_to_end(key)
        return self._snapshots[key]

    def pay_distribution(
        self, distribution_id: Any, investor_id: Any = None, idempotency_key: str | None = None
    ) -> Outcome:
        payment = DistributionPayment(distribution_id, investor_id)
        ident = UUID(payment.distribution_id)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            paid = uow.get(Distribution, ident, f"distribution {ident}").pay(payment.investor_id)
            return {"distribution_id": payment.distribution_id, "paid_investor_ids": paid}

        return self._execute("pay_distribution", payment.payload(), run, idempotency_key)

    # ----- votes -----

    def create_proposal(
        self,
        asset_id: str,
        title: Any,
        options: Any,
        quorum_bps: Any,
        closes_at: Any = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        submission = ProposalSubmission(asset_id, title, options, quorum_bps, closes_at)
        payload = submission.payload()

        def run(uow: UnitOfWork) -> dict[str, Any]:
            asset = uow.get(Asset, Asset.create_id(submission.asset_id), f"asset {asset_id}")
            proposal = uow.add(
                Proposal.open(**payload, asset_version=asset.version, supply_at_snapshot=asset.total_supply)
            )
            return {"proposal_id": str(proposal.id)}

        return self._execute("create_proposal", payload, run, idempotency_key)

    def cast_vote(
        self, proposal_id: Any, investor_id: str, option: Any, idempotency_key: str | None = None
    ) -> Outcome:
        vote = Vote(proposal_id, investor_id, option)
        ident = UUID(vote.proposal_id)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            proposal = uow.get(Proposal, ident, f"proposal {ident}")
            uow.get(Investor, Investor.create_id(vote.investor_id), f"investor {vote.investor_id}")
            weight = self._holdings_at_version(proposal.asset_id, proposal.asset_version).get(
                vote.investor_id, 0
            )
            proposal.cast_vote(vote.investor_id, vote.option, weight, uow.now)
            return {"proposal_id": vote.proposal_id, "weight": weight}

        return self._execute("cast_vote", vote.payload(), run, idempotency_key)

    def close_proposal(self, proposal_id: Any, idempotency_key: str | None = None) -> Outcome:
        closing = ProposalClosing(proposal_id)
        ident = UUID(closing.proposal_id)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            proposal = uow.get(Proposal, ident, f"proposal {ident}")
            proposal.close()
            return {"proposal_id": closing.proposal_id, "result": proposal.result}

        return self._execute("close_proposal", closing.payload(), run, idempotency_key)

    # ----- chain (facts reported by the chain adapter) -----

    def record_chain_outcome(
        self,
        seq: int,
        kind: str,
        asset_id: str,
        *,
        succeeded: bool,
        tx_hash: str | None = None,
        block_number: int | None = None,
        block_hash: str | None = None,
        reason: str | None = None,
    ) -> Outcome:
        """Records how an outbox operation ended on one token; recording it again is harmless."""
        payload: dict[str, Any] = {
            "seq": seq,
            "kind": kind,
            "asset_id": v.asset_id(asset_id),
            "succeeded": succeeded,
            "tx_hash": tx_hash,
            "block_number": block_number,
            "block_hash": block_hash,
            "reason": reason,
        }

        def run(uow: UnitOfWork) -> dict[str, Any]:
            uow.add(ChainOperation.record(**payload))
            return {"seq": seq, "asset_id": asset_id, "succeeded": succeeded}

        return self._execute("record_chain_outcome", payload, run, f"chain-operation:{seq}:{asset_id}")

    def start_mirror(
        self, asset_id: str, start_block: int, paused: bool, contracts: dict[str, Any] | None = None
    ) -> Outcome:
        """Starts mirroring the token an asset is bound to, from `start_block`, with the
        pause state read from the token at binding (T-REX `init` pauses without an event)
        and the addresses of the token's suite where they are known."""
        ident = v.asset_id(asset_id)

        def run(uow: UnitOfWork) -> dict[str, Any]:
            asset = uow.get(Asset, Asset.create_id(ident), f"asset {ident}")
            if asset.token is None:
                raise InvalidStateError(f"asset {ident} is not bound to a token")
            binding = {
                "chain_id": asset.token["chain_id"],
                "asset_id": ident,
                "token": asset.token["token_address"],
                "identity_registry": asset.token["identity_registry"],
            }
            mirror_id = ChainMirror.create_id(binding["chain_id"], binding["token"])
            if uow.exists(mirror_id):
                raise AlreadyExistsError(f"the token of {ident} is mirrored already")
            known = {**(contracts or {}), "chain_id": binding["chain_id"], "token": binding["token"]}
            known["identity_registry"] = binding["identity_registry"]
            uow.add(ChainMirror.start(**binding, start_block=start_block, paused=paused, contracts=known))
            return {"mirror_id": str(mirror_id)}

        payload = {"asset_id": ident, "start_block": start_block, "paused": paused, "contracts": contracts}
        return self._execute("start_mirror", payload, run, None)

    def start_anchor_mirror(self, chain_id: int, address: str, start_block: int) -> Outcome:
        """Starts mirroring the anchor contract of signed tree heads (no asset: its logs are
        recorded under `ANCHOR_MIRROR`) from the block it was deployed in."""

        def run(uow: UnitOfWork) -> dict[str, Any]:
            mirror_id = ChainMirror.create_id(chain_id, address)
            if uow.exists(mirror_id):
                raise AlreadyExistsError(f"the anchor contract {address} is mirrored already")
            contracts = {"chain_id": chain_id, "anchor": address}
            uow.add(ChainMirror.start(
                chain_id=chain_id, asset_id=ANCHOR_MIRROR, token=address, identity_registry=address,
                start_block=start_block, paused=False, contracts=contracts,
            ))
            return {"mirror_id": str(mirror_id)}

        payload = {"chain_id": chain_id, "address": address, "start_block": start_block}
        return self._execute("start_anchor_mirror", payload, run, None)

    def get_mirror(self, chain_id: int, token: str) -> ChainMirror:
        return self._read(ChainMirror, ChainMirror.create_id(chain_id, token), f"mirror of {token}")

    def mirror_blocks(
        self,
        mirror_id: UUID,
        from_block: int,
        to_block: int,
        final_block: int,
        window: list[list[Any]],
        logs: list[dict[str, Any]],
    ) -> Outcome:
        """Records the logs read from blocks `from_block..to_block` and the mirror's new
        checkpoint in one transaction; refused if another mirror recorded them first."""

        def run(uow: UnitOfWork) -> dict[str, Any]:
            mirror = uow.get(ChainMirror, mirror_id, "mirror")
            mirror.check_continues(from_block)
            recent: dict[int, list[str]] = {}
            topic, now = get_topic(ChainLog.Mirrored), ChainLog.Mirrored.create_timestamp()
            for log in logs:
                log_id, state = ChainLog.mirrored_state(now, log)
                uow.record_created_state(log_id, topic, state)
                if log["block_number"] > final_block:
                    recent.setdefault(log["block_number"], []).append(str(log_id))
            mirror.advance(to_block, final_block, window, recent)
            return {"to_block": to_block, "logs": len(logs)}

        return self._execute("mirror_blocks", {}, run, None)

    def retract_blocks(self, mirror_id: UUID, fork_block: int, orphaned: list[list[Any]]) -> Outcome:
        """Retracts the mirrored logs of blocks a reorganisation orphaned (from `fork_block`
        on) and rewinds the mirror there, in one transaction."""

        def run(uow: UnitOfWork) -> dict[str, Any]:
            mirror = uow.get(ChainMirror, mirror_id, "mirror")
            if fork_block >= mirror.next_block:
                raise MirrorMovedError(f"mirror has not read block {fork_block} yet")
            retracted = 0
            for number, ids in sorted(mirror.logs.items()):
                if number < fork_block:
                    continue
                for log_id in ids:
                    uow.get(ChainLog, UUID(log_id), "chain log").retract(
                        f"block {number} orphaned by a reorganisation at {fork_block}"
                    )
                    retracted += 1
            mirror.reorganise(fork_block, orphaned)
            return {"fork_block": fork_block, "retracted": retracted}

        return self._execute("retract_blocks", {}, run, None)

    def record_reconciliation(self, report: dict[str, Any], idempotency_key: str | None = None) -> Outcome:
        """Records a reconciliation run with every difference and in-flight operation it found.

        An idempotency key stands for the request (reconcile this asset), not for the report:
        see `replayed`, which callers check before doing the work."""

        def run(uow: UnitOfWork) -> dict[str, Any]:
            reconciliation = uow.add(Reconciliation.complete(**report))
            return {"reconciliation_id": str(reconciliation.id)}

        return self._execute("reconcile", {"asset_id": report["asset_id"]}, run, idempotency_key)

    def replayed(self, name: str, payload: dict[str, Any], idempotency_key: str | None) -> Outcome | None:
        """The first outcome of a command already sent with this key, None for a new key;
        `idempotency_key_reused` if the key came with another request."""
        if idempotency_key is None:
            return None
        idempotency_key = self._scoped(idempotency_key, current_actor())
        stored = self.admin.idempotency_records([idempotency_key])
        if idempotency_key not in stored:
            return None
        request_hash, response, position = stored[idempotency_key]
        if request_hash != Command(name, payload, lambda _: {}, idempotency_key).request_hash:
            raise IdempotencyKeyReusedError("this Idempotency-Key was used with another request")
        return Outcome(json.loads(response), position)

    # ----- API keys (the key table belongs to the API adapter; these events record who made,
    # rotated and revoked which key: see `adapters.api.keys.KeyAdmin`) -----

    def record_key_created(
        self, terms: ApiKeyTerms, request: dict[str, Any], idempotency_key: str | None = None
    ) -> Outcome:
        def run(uow: UnitOfWork) -> dict[str, Any]:
            uow.add(ApiKey.create(terms))
            return {"key_id": terms.key_id}

        return self._execute("create_api_key", request, run, idempotency_key)

    def record_key_rotated(
        self,
        terms: ApiKeyTerms,
        previous_valid_until: datetime,
        request: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> Outcome:
        def run(uow: UnitOfWork) -> dict[str, Any]:
            _api_key(uow, terms).rotate(previous_valid_until)
            return {"key_id": terms.key_id, "previous_valid_until": previous_valid_until.isoformat()}

        return self._execute("rotate_api_key", {"key_id": terms.key_id, **request}, run, idempotency_key)

    def record_key_revoked(self, terms: ApiKeyTerms, idempotency_key: str | None = None) -> Outcome:
        def run(uow: UnitOfWork) -> dict[str, Any]:
            _api_key(uow, terms).revoke()
            return {"key_id": terms.key_id}

        return self._execute("revoke_api_key", {"key_id": terms.key_id}, run, idempotency_key)


def _api_key(uow: UnitOfWork, terms: ApiKeyTerms) -> ApiKey:
    """The key's aggregate; a key made before keys were recorded is recorded on its first change."""
    if uow.exists(ApiKey.create_id(terms.key_id)):
        return uow.get(ApiKey, ApiKey.create_id(terms.key_id), f"key {terms.key_id}")
    return uow.add(ApiKey.create(terms))


def claim_wallet(uow: UnitOfWork, wallet: str, investor_id: str) -> None:
    if uow.exists(WalletClaim.create_id(wallet)):
        raise AlreadyExistsError(f"wallet {wallet} already belongs to an investor")
    uow.add(WalletClaim.claim(wallet, investor_id))
