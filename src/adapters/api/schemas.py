"""Request bodies. Quantities and amounts are the ledger's `Quantity` (a JSON integer or a string of
digits, never a float); the ledger validates every value again, so these only shape the input."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model

from ledger.domain.commands import (
    DistributionDeclaration,
    DistributionPayment,
    InvestmentOrder,
    KycDecision,
    OfferingChange,
    PaymentConfirmation,
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
from ledger.domain.quantity import DIGITS
from ledger.domain.terms import AssetTerms, InvestorRegistration, Terms, required

# An integer that is not a quantity (a count, a limit), accepted in the same two forms.
Integer = StrictInt | Annotated[str, Field(pattern=DIGITS)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def request_model(terms: type[Terms], name: str) -> type[Body]:
    """The request body of a typed value of the ledger: its fields, in its order, with their
    defaults, but for those the request's path gives; the JSON types that carry them (strict: no
    coercion)."""
    hints = get_type_hints(terms, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(terms):  # type: ignore[arg-type]
        if f.metadata["path"]:
            continue
        default = ... if required(f) else list(f.default) if isinstance(f.default, tuple) else f.default
        fields[f.name] = (_carried(hints[f.name], f.metadata["digits"]), default)
    model: type[Body] = create_model(name, __base__=Body, __module__=__name__, **fields)
    return model


def _carried(hint: Any, digits: bool) -> Any:
    """The JSON type of a field's type: a `Quantity` as it is, any other integer as an integer (or,
    where the field says `digits`, also a string of digits), text and flags strictly, a time as
    RFC 3339 text, a tuple as a list."""
    if get_origin(hint) is Annotated:
        return hint
    if get_origin(hint) in (Union, UnionType):
        return Union[tuple(_carried(a, digits) for a in get_args(hint))]  # noqa: UP007 (built at run time)
    if get_origin(hint) is tuple:
        return list[_carried(get_args(hint)[0], digits)]  # type: ignore[misc]
    strict = {
        str: StrictStr,
        datetime: StrictStr,
        bool: StrictBool,
        int: Integer if digits else StrictInt,
        type(None): type(None),
    }
    return strict[hint]


if TYPE_CHECKING:  # a model made at run time is, to the type checker, a body
    AssetIn = Body
else:
    AssetIn = request_model(AssetTerms, "AssetIn")


if TYPE_CHECKING:
    ValuationIn = Body
else:
    ValuationIn = request_model(ValuationReport, "ValuationIn")


if TYPE_CHECKING:
    OfferingIn = Body
else:
    OfferingIn = request_model(OfferingChange, "OfferingIn")


if TYPE_CHECKING:
    TokenIn = Body
else:
    TokenIn = request_model(TokenBinding, "TokenIn")


if TYPE_CHECKING:
    QuantityIn = Body
else:  # freezing and unfreezing tokens
    QuantityIn = request_model(TokenFreeze, "QuantityIn")


if TYPE_CHECKING:
    InvestorIn = Body
else:
    InvestorIn = request_model(InvestorRegistration, "InvestorIn")


if TYPE_CHECKING:
    KycIn = Body
else:
    KycIn = request_model(KycDecision, "KycIn")


if TYPE_CHECKING:
    WalletIn = Body
else:
    WalletIn = request_model(WalletAddition, "WalletIn")


if TYPE_CHECKING:
    RecoveryIn = Body
else:
    RecoveryIn = request_model(WalletRecovery, "RecoveryIn")


if TYPE_CHECKING:
    InvestmentIn = Body
else:
    InvestmentIn = request_model(InvestmentOrder, "InvestmentIn")


if TYPE_CHECKING:
    PaymentIn = Body
else:
    PaymentIn = request_model(PaymentConfirmation, "PaymentIn")


if TYPE_CHECKING:
    TransferIn = Body
else:
    TransferIn = request_model(TransferOrder, "TransferIn")


if TYPE_CHECKING:
    RedemptionIn = Body
else:
    RedemptionIn = request_model(RedemptionOrder, "RedemptionIn")


if TYPE_CHECKING:
    DistributionIn = Body
else:
    DistributionIn = request_model(DistributionDeclaration, "DistributionIn")


if TYPE_CHECKING:
    PayIn = Body
else:
    PayIn = request_model(DistributionPayment, "PayIn")


if TYPE_CHECKING:
    ProposalIn = Body
else:
    ProposalIn = request_model(ProposalSubmission, "ProposalIn")


if TYPE_CHECKING:
    VoteIn = Body
else:
    VoteIn = request_model(Vote, "VoteIn")
