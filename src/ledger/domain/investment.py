"""The Investment aggregate: money promised for tokens, from pending payment to settled."""

from __future__ import annotations

from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from ledger.domain.asset import Purchase
from ledger.errors import InvalidStateError

PENDING, SETTLED, CANCELLED = "pending_payment", "settled", "cancelled"


class Investment(Aggregate):
    """One investor's purchase of one asset; tokens are issued when the payment is confirmed."""

    class Placed(Aggregate.Created):
        investor_id: str
        asset_id: str
        amount: int
        quantity: int
        accepted_amount: int
        refund_amount: int

    def __init__(
        self,
        investor_id: str,
        asset_id: str,
        amount: int,
        quantity: int,
        accepted_amount: int,
        refund_amount: int,
    ) -> None:
        self.investor_id = investor_id
        self.asset_id = asset_id
        self.amount = amount
        self.quantity = quantity
        self.accepted_amount = accepted_amount
        self.refund_amount = refund_amount
        self.status = PENDING
        self.payment_ref: str | None = None

    @classmethod
    def place(cls, investor_id: str, asset_id: str, amount: int, purchase: Purchase) -> Investment:
        return cls._create(
            cls.Placed,
            id=uuid4(),
            investor_id=investor_id,
            asset_id=asset_id,
            amount=amount,
            quantity=purchase.quantity,
            accepted_amount=purchase.accepted_amount,
            refund_amount=purchase.refund_amount,
        )

    @property
    def investment_id(self) -> UUID:
        return self.id

    def check_pending(self) -> None:
        if self.status != PENDING:
            raise InvalidStateError(f"investment {self.id} is {self.status}")

    def confirm_payment(self, payment_ref: str) -> None:
        self.check_pending()
        self.trigger_event(self.PaymentConfirmed, payment_ref=payment_ref)

    class PaymentConfirmed(Aggregate.Event):
        payment_ref: str

        def apply(self, investment: Investment) -> None:
            investment.status = SETTLED
            investment.payment_ref = self.payment_ref

    def cancel(self) -> None:
        self.check_pending()
        self.trigger_event(self.Cancelled)

    class Cancelled(Aggregate.Event):
        def apply(self, investment: Investment) -> None:
            investment.status = CANCELLED
