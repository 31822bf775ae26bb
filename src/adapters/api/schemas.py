"""Request bodies. Quantities and amounts are the ledger's `Quantity` (a JSON integer or a string of
digits, never a float); the ledger validates every value again, so these only shape the input."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ledger.domain.quantity import DIGITS, Quantity

# An integer that is not a quantity (a holder limit), accepted in the same two forms.
Integer = StrictInt | Annotated[str, Field(pattern=DIGITS)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssetIn(Body):
    asset_id: StrictStr
    name: StrictStr
    symbol: StrictStr
    decimals: StrictInt
    currency: StrictStr
    unit_price: Quantity
    authorized_supply: Quantity
    min_investment: Quantity
    max_investment: Quantity
    max_holders: Integer | None = None
    max_balance: Quantity | None = None
    allowed_countries: list[StrictStr] = []
    accredited_only: StrictBool = False
    lockup_seconds: StrictInt = 0


class ValuationIn(Body):
    price_per_token: Quantity
    valued_at: StrictStr
    source: StrictStr
    method: StrictStr | None = None


class OfferingIn(Body):
    open: StrictBool


class TokenIn(Body):
    chain_id: StrictInt
    token_address: StrictStr
    identity_registry: StrictStr


class QuantityIn(Body):
    quantity: Quantity


class InvestorIn(Body):
    investor_id: StrictStr
    country: StrictStr
    wallet: StrictStr
    accredited: StrictBool = False


class KycIn(Body):
    status: StrictStr
    expires_at: StrictStr | None = None


class WalletIn(Body):
    wallet: StrictStr


class RecoveryIn(Body):
    lost_wallet: StrictStr
    new_wallet: StrictStr


class InvestmentIn(Body):
    investor_id: StrictStr
    asset_id: StrictStr
    amount: Quantity


class PaymentIn(Body):
    payment_ref: StrictStr


class TransferIn(Body):
    asset_id: StrictStr
    from_investor_id: StrictStr
    to_investor_id: StrictStr
    quantity: Quantity
    forced: StrictBool = False


class RedemptionIn(Body):
    asset_id: StrictStr
    investor_id: StrictStr
    quantity: Quantity


class DistributionIn(Body):
    asset_id: StrictStr
    amount: Quantity
    record_position: StrictInt | None = None


class PayIn(Body):
    investor_id: StrictStr | None = None


class ProposalIn(Body):
    asset_id: StrictStr
    title: StrictStr
    options: list[StrictStr]
    quorum_bps: StrictInt
    closes_at: StrictStr | None = None


class VoteIn(Body):
    investor_id: StrictStr
    option: StrictStr
