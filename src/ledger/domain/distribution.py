"""The Distribution aggregate (dividend, rent, project profit) and its pro-rata allocation."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import uuid4

from eventsourcing.domain import Aggregate

from ledger.domain.quantity import Count
from ledger.errors import InvalidStateError, NotFoundError


def allocate(amount: int, holdings: Mapping[str, int]) -> dict[str, int]:
    """Largest-remainder split of `amount` pro rata to `holdings`.

    Each holder gets the floor of the exact share; the units left over go one
    each to the largest fractional remainders, ties broken by investor id.
    The result sums to `amount` exactly and no share is a unit or more away
    from the exact share.
    """
    total = sum(holdings.values())
    if total <= 0:
        raise InvalidStateError("there are no holders to distribute to")
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for investor_id, quantity in holdings.items():
        share, remainder = divmod(amount * quantity, total)
        shares[investor_id] = share
        remainders.append((-remainder, investor_id))
    leftover = amount - sum(shares.values())
    for _, investor_id in sorted(remainders)[:leftover]:
        shares[investor_id] += 1
    return shares


class Distribution(Aggregate):
    """Money paid out to holders of an asset as of a record position."""

    class Declared(Aggregate.Created):
        asset_id: str
        amount: int
        record_position: Count | None
        asset_version: int
        entitlements: dict[str, int]

    def __init__(
        self,
        asset_id: str,
        amount: int,
        record_position: int | None,
        asset_version: int,
        entitlements: dict[str, int],
    ) -> None:
        self.asset_id = asset_id
        self.amount = amount
        self.record_position = record_position
        self.asset_version = asset_version
        self.entitlements = dict(entitlements)
        self.paid: dict[str, bool] = {}

    @classmethod
    def declare(
        cls,
        asset_id: str,
        amount: int,
        record_position: int | None,
        asset_version: int,
        holdings: Mapping[str, int],
    ) -> Distribution:
        return cls._create(
            cls.Declared,
            id=uuid4(),
            asset_id=asset_id,
            amount=amount,
            record_position=record_position,
            asset_version=asset_version,
            entitlements=allocate(amount, holdings),
        )

    def pay(self, investor_id: str | None) -> list[str]:
        """Marks one investor's entitlement paid, or all unpaid ones; returns who was paid."""
        if investor_id is None:
            unpaid = sorted(i for i in self.entitlements if i not in self.paid)
            if not unpaid:
                raise InvalidStateError(f"distribution {self.id} is already paid")
        else:
            if investor_id not in self.entitlements:
                raise NotFoundError(f"investor {investor_id} has no entitlement in {self.id}")
            if investor_id in self.paid:
                raise InvalidStateError(f"investor {investor_id} is already paid in {self.id}")
            unpaid = [investor_id]
        self.trigger_event(self.EntitlementsPaid, investor_ids=unpaid)
        return unpaid

    class EntitlementsPaid(Aggregate.Event):
        investor_ids: list[str]

        def apply(self, distribution: Distribution) -> None:
            for investor_id in self.investor_ids:
                distribution.paid[investor_id] = True
