"""Request bodies. Quantities and amounts are a JSON integer or a string of digits, never a float;
the ledger validates every value again, so these only shape the input."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Digits = Annotated[str, Field(pattern=r"^[0-9]{1,40}$")]
Integer = StrictInt | Digits


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssetIn(Body):
    asset_id: StrictStr
    name: StrictStr
    symbol: StrictStr
    decimals: StrictInt
    currency: StrictStr
    unit_price: Integer
    authorized_supply: Integer
    min_investment: Integer
    max_investment: Integer
    max_holders: Integer | None = None
    max_balance: Integer | None = None
    allowed_countries: list[StrictStr] = []
    accredited_only: StrictBool = False
    lockup_seconds: StrictInt = 0


class ValuationIn(Body):
    price_per_token: Integer
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
    quantity: Integer


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
    amount: Integer


class PaymentIn(Body):
    payment_ref: StrictStr


class TransferIn(Body):
    asset_id: StrictStr
    from_investor_id: StrictStr
    to_investor_id: StrictStr
    quantity: Integer
    forced: StrictBool = False


class RedemptionIn(Body):
    asset_id: StrictStr
    investor_id: StrictStr
    quantity: Integer


class DistributionIn(Body):
    asset_id: StrictStr
    amount: Integer
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
