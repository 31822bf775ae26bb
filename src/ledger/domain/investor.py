"""The Investor aggregate: an opaque id, country, wallets and KYC status.

No personal data ever enters these events: names, e-mails and documents stay
with the KYC provider. A `WalletClaim` makes each wallet belong to at most one
investor, enforced by the event store's uniqueness of aggregate ids.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.asset import Asset
from ledger.domain.terms import InvestorRegistration
from ledger.domain.values import held_stream_id, stream_id
from ledger.errors import InvalidStateError, NotFoundError

KYC_STATUSES = ("pending", "approved", "rejected", "revoked")


def ineligibility(
    kyc_status: str,
    kyc_expires_at: datetime | None,
    country: str,
    accredited: bool,
    allowed_countries: list[str],
    accredited_only: bool,
    now: datetime,
) -> list[str]:
    """Why an investor may not hold an asset (empty when eligible); shared with the read side."""
    reasons = []
    if kyc_status != "approved":
        reasons.append(f"kyc_{kyc_status}")
    elif kyc_expires_at is not None and kyc_expires_at <= now:
        reasons.append("kyc_expired")
    if allowed_countries and country not in allowed_countries:
        reasons.append("country_not_allowed")
    if accredited_only and not accredited:
        reasons.append("not_accredited")
    return reasons


class Investor(Aggregate):
    """A person or company that may hold tokens, known by an opaque id."""

    class Registered(Aggregate.Created):
        investor_id: str
        country: str
        wallet: str
        accredited: bool

    def __init__(self, investor_id: str, country: str, wallet: str, accredited: bool) -> None:
        self.investor_id = investor_id
        self.country = country
        self.wallets = [wallet]
        self.accredited = accredited
        self.kyc_status = "pending"
        self.kyc_expires_at: datetime | None = None

    @staticmethod
    def create_id(investor_id: str) -> UUID:
        return held_stream_id("investor", investor_id)

    @classmethod
    def register(cls, registration: InvestorRegistration) -> Investor:
        return cls._create(
            cls.Registered, id=cls.create_id(registration.investor_id), **registration.payload()
        )

    def eligible_for(self, asset: Asset, now: datetime) -> bool:
        """KYC approved and unexpired, country allowed, accredited where the asset requires it."""
        return not ineligibility(
            self.kyc_status,
            self.kyc_expires_at,
            self.country,
            self.accredited,
            asset.allowed_countries,
            asset.accredited_only,
            now,
        )

    def update_kyc(self, status: str, expires_at: datetime | None) -> None:
        self.trigger_event(self.KycUpdated, status=status, expires_at=expires_at)

    class KycUpdated(Aggregate.Event):
        status: str
        expires_at: datetime | None

        def apply(self, investor: Investor) -> None:
            investor.kyc_status = self.status
            investor.kyc_expires_at = self.expires_at

    def add_wallet(self, wallet: str) -> None:
        if wallet in self.wallets:
            raise InvalidStateError(f"wallet {wallet} is already one of {self.investor_id}'s")
        self.trigger_event(self.WalletAdded, wallet=wallet)

    class WalletAdded(Aggregate.Event):
        wallet: str

        def apply(self, investor: Investor) -> None:
            investor.wallets.append(self.wallet)

    def recover_wallet(self, lost_wallet: str, new_wallet: str) -> None:
        """Replaces a lost wallet with a new one; holdings are per investor and stay put."""
        if lost_wallet not in self.wallets:
            raise NotFoundError(f"wallet {lost_wallet} is not one of {self.investor_id}'s")
        self.trigger_event(self.WalletRecovered, lost_wallet=lost_wallet, new_wallet=new_wallet)

    class WalletRecovered(Aggregate.Event):
        lost_wallet: str
        new_wallet: str

        def apply(self, investor: Investor) -> None:
            investor.wallets[investor.wallets.index(self.lost_wallet)] = self.new_wallet


class WalletClaim(Aggregate):
    """The claim of one wallet address by one investor; a lost wallet stays claimed."""

    class Claimed(Aggregate.Created):
        wallet: str
        investor_id: str

    def __init__(self, wallet: str, investor_id: str) -> None:
        self.wallet = wallet
        self.investor_id = investor_id

    @staticmethod
    def create_id(wallet: str) -> UUID:
        return stream_id("wallet", wallet)

    @classmethod
    def claim(cls, wallet: str, investor_id: str) -> WalletClaim:
        return cls._create(cls.Claimed, id=cls.create_id(wallet), wallet=wallet, investor_id=investor_id)
