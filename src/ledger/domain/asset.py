"""The Asset aggregate: one tokenized security, its terms, lifecycle and register of holdings.

Balances are kept per investor (never per wallet): holder counts and limits are
about people. Every rule is checked by a `check_*` guard before its event is
triggered; the events' `apply` only assigns state, so replaying history never
re-runs today's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.domain import Snapshot as LibrarySnapshot

from ledger.domain.quantity import Count
from ledger.domain.terms import AssetTerms
from ledger.domain.values import held_stream_id
from ledger.errors import (
    AmountAboveMaximumError,
    AmountBelowMinimumError,
    AmountTooSmallError,
    AssetNotOfferingError,
    AssetPausedError,
    AuthorizedSupplyExceededError,
    InsufficientBalanceError,
    InvalidQuantityError,
    InvalidStateError,
    InvalidValuationError,
    InvestorFrozenError,
    InvestorNotEligibleError,
    MaxBalanceExceededError,
    MaxHoldersExceededError,
    SameInvestorError,
)

DRAFT, APPROVED, TOKENIZED = "draft", "approved", "tokenized"


@dataclass(frozen=True)
class Purchase:
    """What an investment amount buys at the asset's unit price."""

    quantity: int
    accepted_amount: int
    refund_amount: int


def price_purchase(amount: int, unit_price: int, decimals: int) -> Purchase:
    """`quantity = amount * 10**decimals // unit_price`; the rest of the money is refunded."""
    scale = 10**decimals
    quantity = amount * scale // unit_price
    accepted = -(-quantity * unit_price // scale)
    return Purchase(quantity, accepted, amount - accepted)


class Asset(Aggregate):
    """A tokenized security (a toll road, a water plant, a rental building) and who holds it."""

    class Registered(Aggregate.Created):
        asset_id: str
        name: str
        symbol: str
        decimals: Count
        currency: str
        unit_price: int
        authorized_supply: int
        min_investment: int
        max_investment: int
        max_holders: Count | None
        max_balance: int | None
        allowed_countries: list[str]
        accredited_only: bool
        lockup_seconds: Count

    def __init__(
        self,
        asset_id: str,
        name: str,
        symbol: str,
        decimals: int,
        currency: str,
        unit_price: int,
        authorized_supply: int,
        min_investment: int,
        max_investment: int,
        max_holders: int | None,
        max_balance: int | None,
        allowed_countries: list[str],
        accredited_only: bool,
        lockup_seconds: int,
    ) -> None:
        self.asset_id = asset_id
        self.name = name
        self.symbol = symbol
        self.decimals = decimals
        self.currency = currency
        self.unit_price = unit_price
        self.authorized_supply = authorized_supply
        self.min_investment = min_investment
        self.max_investment = max_investment
        self.max_holders = max_holders
        self.max_balance = max_balance
        self.allowed_countries = list(allowed_countries)
        self.accredited_only = accredited_only
        self.lockup_seconds = lockup_seconds
        self.status = DRAFT
        self.offering_open = False
        self.paused = False
        self.token: dict[str, Any] | None = None
        self.balances: dict[str, int] = {}
        self.frozen: dict[str, int] = {}
        self.address_frozen: dict[str, bool] = {}
        self.reserved: dict[str, int] = {}
        self.lots: dict[str, list[tuple[datetime, int]]] = {}
        self.total_supply = 0
        self.total_reserved = 0

    class Snapshot(LibrarySnapshot):
        """The asset's state stored for a fast load (`ledger.snapshots`); JSON keeps no
        tuples, so the issuance lots are made tuples again."""

        def mutate(self, _: None) -> Asset:
            asset = cast(Asset, super().mutate(_))
            asset.lots = {k: [(issued_at, q) for issued_at, q in v] for k, v in asset.lots.items()}
            return asset

    @staticmethod
    def create_id(asset_id: str) -> UUID:
        return held_stream_id("asset", asset_id)

    @classmethod
    def register(cls, terms: AssetTerms) -> Asset:
        return cls._create(cls.Registered, id=cls.create_id(terms.asset_id), **terms.payload())

    # ----- queries on the current state (pure) -----

    @property
    def holder_count(self) -> int:
        return len(self.balances)

    def balance_of(self, investor_id: str) -> int:
        return self.balances.get(investor_id, 0)

    def frozen_of(self, investor_id: str) -> int:
        return self.frozen.get(investor_id, 0)

    def locked_of(self, investor_id: str, now: datetime) -> int:
        horizon = now - timedelta(seconds=self.lockup_seconds)
        recent = sum(q for issued_at, q in self.lots.get(investor_id, ()) if issued_at > horizon)
        return min(recent, self.balance_of(investor_id) - self.frozen_of(investor_id))

    def transferable_of(self, investor_id: str, now: datetime) -> int:
        free = self.balance_of(investor_id) - self.frozen_of(investor_id)
        return free - self.locked_of(investor_id, now)

    def is_prospective_holder(self, investor_id: str) -> bool:
        """Holds tokens, or has a pending investment that will make them a holder."""
        return investor_id in self.balances or investor_id in self.reserved

    @property
    def prospective_holder_count(self) -> int:
        return len(self.balances.keys() | self.reserved.keys())

    # ----- lifecycle -----

    def approve(self) -> None:
        if self.status != DRAFT:
            raise InvalidStateError(f"asset {self.asset_id} is {self.status}, not draft")
        self.trigger_event(self.Approved)

    class Approved(Aggregate.Event):
        def apply(self, asset: Asset) -> None:
            asset.status = APPROVED

    def set_offering(self, open_: bool) -> None:
        if self.status == DRAFT:
            raise InvalidStateError(f"asset {self.asset_id} is not approved yet")
        if self.offering_open == open_:
            raise InvalidStateError(f"offering of {self.asset_id} is already {'open' if open_ else 'closed'}")
        self.trigger_event(self.OfferingOpened if open_ else self.OfferingClosed)

    class OfferingOpened(Aggregate.Event):
        def apply(self, asset: Asset) -> None:
            asset.offering_open = True

    class OfferingClosed(Aggregate.Event):
        def apply(self, asset: Asset) -> None:
            asset.offering_open = False

    def pause(self) -> None:
        if self.paused:
            raise InvalidStateError(f"asset {self.asset_id} is already paused")
        self.trigger_event(self.Paused)

    class Paused(Aggregate.Event):
        def apply(self, asset: Asset) -> None:
            asset.paused = True

    def unpause(self) -> None:
        if not self.paused:
            raise InvalidStateError(f"asset {self.asset_id} is not paused")
        self.trigger_event(self.Unpaused)

    class Unpaused(Aggregate.Event):
        def apply(self, asset: Asset) -> None:
            asset.paused = False

    def bind_token(self, chain_id: int, token_address: str, identity_registry: str) -> None:
        if self.status == DRAFT:
            raise InvalidStateError(f"asset {self.asset_id} must be approved before tokenization")
        if self.token is not None:
            raise InvalidStateError(f"asset {self.asset_id} is already bound to a token")
        self.trigger_event(
            self.TokenBound,
            chain_id=chain_id,
            token_address=token_address,
            identity_registry=identity_registry,
        )

    class TokenBound(Aggregate.Event):
        chain_id: Count
        token_address: str
        identity_registry: str

        def apply(self, asset: Asset) -> None:
            asset.status = TOKENIZED
            asset.token = {
                "chain_id": self.chain_id,
                "token_address": self.token_address,
                "identity_registry": self.identity_registry,
            }

    # ----- primary issuance -----

    def check_investment(self, investor_id: str, eligible: bool, amount: int) -> Purchase:
        """Every investment rule, in the order of the contract; returns what the amount buys."""
        if self.status == DRAFT or not self.offering_open:
            raise AssetNotOfferingError(f"asset {self.asset_id} is not offering")
        if not eligible:
            raise InvestorNotEligibleError(f"investor {investor_id} is not eligible for {self.asset_id}")
        if amount < self.min_investment:
            raise AmountBelowMinimumError(f"amount is below the minimum of {self.min_investment}")
        if amount > self.max_investment:
            raise AmountAboveMaximumError(f"amount is above the maximum of {self.max_investment}")
        purchase = price_purchase(amount, self.unit_price, self.decimals)
        if purchase.quantity == 0:
            raise AmountTooSmallError("amount buys no base unit of the token")
        if self.total_supply + self.total_reserved + purchase.quantity > self.authorized_supply:
            raise AuthorizedSupplyExceededError(f"asset {self.asset_id} has too little supply left")
        self.check_new_holder(investor_id)
        self.check_max_balance(investor_id, purchase.quantity)
        return purchase

    def check_new_holder(self, investor_id: str) -> None:
        if (
            self.max_holders is not None
            and not self.is_prospective_holder(investor_id)
            and self.prospective_holder_count >= self.max_holders
        ):
            raise MaxHoldersExceededError(
                f"asset {self.asset_id} is at its limit of {self.max_holders} holders"
            )

    def check_max_balance(self, investor_id: str, quantity: int) -> None:
        if self.max_balance is None:
            return
        held = self.balance_of(investor_id) + self.reserved.get(investor_id, 0)
        if held + quantity > self.max_balance:
            raise MaxBalanceExceededError(f"investor {investor_id} would hold more than {self.max_balance}")

    def reserve(self, investment_id: UUID, investor_id: str, quantity: int) -> None:
        """Sets aside supply for a pending investment, so payment can always be honoured."""
        self.trigger_event(
            self.SupplyReserved, investment_id=investment_id, investor_id=investor_id, quantity=quantity
        )

    class SupplyReserved(Aggregate.Event):
        investment_id: UUID
        investor_id: str
        quantity: int

        def apply(self, asset: Asset) -> None:
            asset.reserved[self.investor_id] = asset.reserved.get(self.investor_id, 0) + self.quantity
            asset.total_reserved += self.quantity

    def check_reservation(self, investor_id: str, quantity: int) -> None:
        if self.reserved.get(investor_id, 0) < quantity:
            raise InvalidStateError(f"no reservation of {quantity} for {investor_id} on {self.asset_id}")

    def release(self, investment_id: UUID, investor_id: str, quantity: int) -> None:
        self.check_reservation(investor_id, quantity)
        self.trigger_event(
            self.ReservationReleased, investment_id=investment_id, investor_id=investor_id, quantity=quantity
        )

    class ReservationReleased(Aggregate.Event):
        investment_id: UUID
        investor_id: str
        quantity: int

        def apply(self, asset: Asset) -> None:
            _unreserve(asset, self.investor_id, self.quantity)

    def issue(self, investment_id: UUID, investor_id: str, quantity: int, issued_at: datetime) -> None:
        """Mints the reserved tokens of a paid investment (allowed while paused, as in T-REX)."""
        self.check_reservation(investor_id, quantity)
        self.trigger_event(
            self.TokensIssued,
            investment_id=investment_id,
            investor_id=investor_id,
            quantity=quantity,
            issued_at=issued_at,
        )

    class TokensIssued(Aggregate.Event):
        investment_id: UUID
        investor_id: str
        quantity: int
        issued_at: datetime

        def apply(self, asset: Asset) -> None:
            _unreserve(asset, self.investor_id, self.quantity)
            asset.balances[self.investor_id] = asset.balance_of(self.investor_id) + self.quantity
            asset.total_supply += self.quantity
            if asset.lockup_seconds > 0:
                horizon = self.issued_at - timedelta(seconds=asset.lockup_seconds)
                lots = [lot for lot in asset.lots.get(self.investor_id, []) if lot[0] > horizon]
                lots.append((self.issued_at, self.quantity))
                asset.lots[self.investor_id] = lots

    # ----- transfers, redemptions, freezes -----

    def check_transfer(
        self, from_id: str, to_id: str, quantity: int, receiver_eligible: bool, now: datetime
    ) -> None:
        if quantity <= 0:
            raise InvalidQuantityError("quantity must be positive")
        if from_id == to_id:
            raise SameInvestorError("cannot transfer to the same investor")
        if self.paused:
            raise AssetPausedError(f"asset {self.asset_id} is paused")
        for investor in (from_id, to_id):
            if self.address_frozen.get(investor):
                raise InvestorFrozenError(f"investor {investor} is frozen on {self.asset_id}")
        if quantity > self.transferable_of(from_id, now):
            raise InsufficientBalanceError(
                f"investor {from_id} can transfer {self.transferable_of(from_id, now)}, not {quantity}"
            )
        if not receiver_eligible:
            raise InvestorNotEligibleError(f"investor {to_id} is not eligible for {self.asset_id}")
        self.check_new_holder(to_id)
        self.check_max_balance(to_id, quantity)

    def check_forced(self, investor_id: str, quantity: int) -> None:
        if quantity <= 0:
            raise InvalidQuantityError("quantity must be positive")
        if self.balance_of(investor_id) < quantity:
            raise InsufficientBalanceError(
                f"investor {investor_id} holds {self.balance_of(investor_id)}, not {quantity}"
            )

    def _unfrozen_by_taking(self, investor_id: str, quantity: int) -> int:
        """Frozen tokens a forced operation must release: only what free tokens cannot cover."""
        free = self.balance_of(investor_id) - self.frozen_of(investor_id)
        return max(0, quantity - free)

    def transfer(
        self, from_id: str, to_id: str, quantity: int, receiver_eligible: bool, now: datetime
    ) -> None:
        self.check_transfer(from_id, to_id, quantity, receiver_eligible, now)
        self.trigger_event(
            self.TokensTransferred,
            from_investor_id=from_id,
            to_investor_id=to_id,
            quantity=quantity,
            forced=False,
            unfrozen=0,
        )

    def force_transfer(self, from_id: str, to_id: str, quantity: int) -> None:
        """An agent's transfer: ignores pause, freezes, lock-up and eligibility."""
        if quantity > 0 and from_id == to_id:
            raise SameInvestorError("cannot transfer to the same investor")
        self.check_forced(from_id, quantity)
        self.trigger_event(
            self.TokensTransferred,
            from_investor_id=from_id,
            to_investor_id=to_id,
            quantity=quantity,
            forced=True,
            unfrozen=self._unfrozen_by_taking(from_id, quantity),
        )

    class TokensTransferred(Aggregate.Event):
        """Version 2 says whether an agent forced the transfer and how many frozen
        tokens it released; version 1 events were ordinary transfers."""

        from_investor_id: str
        to_investor_id: str
        quantity: int
        forced: bool
        unfrozen: int

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["forced"] = False
            state["unfrozen"] = 0

        def apply(self, asset: Asset) -> None:
            _take(asset, self.from_investor_id, self.quantity, self.unfrozen)
            asset.balances[self.to_investor_id] = asset.balance_of(self.to_investor_id) + self.quantity

    def redeem(self, investor_id: str, quantity: int) -> None:
        """Burns tokens of an investor (buy-back, maturity); same balance rule as a forced transfer."""
        self.check_forced(investor_id, quantity)
        self.trigger_event(
            self.TokensRedeemed,
            investor_id=investor_id,
            quantity=quantity,
            unfrozen=self._unfrozen_by_taking(investor_id, quantity),
        )

    class TokensRedeemed(Aggregate.Event):
        investor_id: str
        quantity: int
        unfrozen: int

        def apply(self, asset: Asset) -> None:
            _take(asset, self.investor_id, self.quantity, self.unfrozen)
            asset.total_supply -= self.quantity

    def freeze_tokens(self, investor_id: str, quantity: int) -> None:
        if quantity <= 0:
            raise InvalidQuantityError("quantity must be positive")
        if self.frozen_of(investor_id) + quantity > self.balance_of(investor_id):
            raise InsufficientBalanceError(f"investor {investor_id} has too few unfrozen tokens")
        self.trigger_event(self.TokensFrozen, investor_id=investor_id, quantity=quantity)

    class TokensFrozen(Aggregate.Event):
        investor_id: str
        quantity: int

        def apply(self, asset: Asset) -> None:
            asset.frozen[self.investor_id] = asset.frozen_of(self.investor_id) + self.quantity

    def unfreeze_tokens(self, investor_id: str, quantity: int) -> None:
        if quantity <= 0 or quantity > self.frozen_of(investor_id):
            raise InvalidQuantityError(
                f"quantity must be positive and at most the frozen {self.frozen_of(investor_id)}"
            )
        self.trigger_event(self.TokensUnfrozen, investor_id=investor_id, quantity=quantity)

    class TokensUnfrozen(Aggregate.Event):
        investor_id: str
        quantity: int

        def apply(self, asset: Asset) -> None:
            _unfreeze(asset, self.investor_id, self.quantity)

    def freeze_address(self, investor_id: str) -> None:
        if self.address_frozen.get(investor_id):
            raise InvalidStateError(f"investor {investor_id} is already frozen on {self.asset_id}")
        self.trigger_event(self.AddressFrozen, investor_id=investor_id)

    class AddressFrozen(Aggregate.Event):
        investor_id: str

        def apply(self, asset: Asset) -> None:
            asset.address_frozen[self.investor_id] = True

    def unfreeze_address(self, investor_id: str) -> None:
        if not self.address_frozen.get(investor_id):
            raise InvalidStateError(f"investor {investor_id} is not frozen on {self.asset_id}")
        self.trigger_event(self.AddressUnfrozen, investor_id=investor_id)

    class AddressUnfrozen(Aggregate.Event):
        investor_id: str

        def apply(self, asset: Asset) -> None:
            asset.address_frozen.pop(self.investor_id, None)

    # ----- valuations -----

    def check_valuation(self, price_per_token: int, valued_at: datetime, now: datetime) -> None:
        if price_per_token <= 0:
            raise InvalidValuationError("price_per_token must be positive")
        if valued_at > now:
            raise InvalidValuationError("valued_at is in the future")
        if valued_at < self.created_on:
            raise InvalidValuationError(f"valued_at is before asset {self.asset_id} was registered")

    def value(
        self, price_per_token: int, valued_at: datetime, source: str, method: str | None, now: datetime
    ) -> None:
        """Records what one whole token was worth on `valued_at` (an appraisal, a NAV report).
        A valuation is never edited: a correction is a newer valuation."""
        self.check_valuation(price_per_token, valued_at, now)
        self.trigger_event(
            self.Valued, price_per_token=price_per_token, valued_at=valued_at, source=source, method=method
        )

    class Valued(Aggregate.Event):
        """A valuation of the asset: minor units per whole token as of `valued_at`."""

        price_per_token: int
        valued_at: datetime
        source: str
        method: str | None


def _unreserve(asset: Asset, investor_id: str, quantity: int) -> None:
    left = asset.reserved[investor_id] - quantity
    if left:
        asset.reserved[investor_id] = left
    else:
        del asset.reserved[investor_id]
    asset.total_reserved -= quantity


def _unfreeze(asset: Asset, investor_id: str, quantity: int) -> None:
    left = asset.frozen_of(investor_id) - quantity
    if left:
        asset.frozen[investor_id] = left
    else:
        asset.frozen.pop(investor_id, None)


def _take(asset: Asset, investor_id: str, quantity: int, unfrozen: int) -> None:
    if unfrozen:
        _unfreeze(asset, investor_id, unfrozen)
    left = asset.balance_of(investor_id) - quantity
    if left:
        asset.balances[investor_id] = left
    else:
        # The issuance history (lots) stays: tokens received later are still
        # locked by an issuance that happened less than the lock-up ago.
        del asset.balances[investor_id]
