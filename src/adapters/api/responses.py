"""What the API answers: one model per response body, and the problem+json errors each operation
can return, so `/openapi.json` describes every answer (SPEC 5, amendments).

The routers build their JSON themselves (the hot reads without a validation pass); these models
only declare it. They forbid fields they do not name (`additionalProperties: false`), so the
schemathesis run of `make test` catches any field an answer carries and its model forgets.
Quantities and amounts are JSON strings of digits, positions and basis points JSON numbers.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from adapters.api.keys import KeyInfo
from ledger import errors
from ledger.domain import quantity
from ledger.domain.terms import AssetTerms, Terms
from projections.compliance import AssetCompliance as AssetComplianceRow
from projections.compliance import InvestorCompliance as InvestorComplianceRow
from projections.investors import InvestorRecord

PROBLEM = "application/problem+json"

Quantity = Annotated[
    quantity.Quantity,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": quantity.ANSWERED,
            "description": "A quantity of tokens in base units: a string of digits.",
        }
    ),
]
Amount = Annotated[
    quantity.Quantity,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": quantity.ANSWERED,
            "description": "Money in minor units of the asset's currency: a string of digits.",
        }
    ),
]
SignedAmount = Annotated[
    quantity.SignedQuantity,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": quantity.SIGNED_ANSWERED,
            "description": "Money in minor units, possibly negative: a string of digits.",
        }
    ),
]


class AsIs:
    """Marks a value that is JSON already, written by its own type (an event's data)."""


Position = Annotated[int, Field(ge=0, description="A global event position.")]
Bps = Annotated[int, Field(description="Basis points (1/100 of a percent), an integer.")]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadModel(Answer):
    as_of_position: Position = Field(description="The read models' position this answer reflects.")


def mirrored(source: type[Any], name: str, base: type[Answer] = Answer, **fields: Any) -> type[Answer]:
    """The model of an answer that is a read model's dataclass as it is: its fields, in its order,
    with their types. `fields` (as `create_model` takes them) give the JSON type of a field
    whose Python type is not what the answer carries (a row of quantities) and add fields the
    answer carries beside the row. An `int` field must be given: it may be a quantity, which is
    answered as a string of digits."""
    hints = get_type_hints(source)
    derived: dict[str, Any] = {}
    for field in dataclasses.fields(source):
        if field.name in fields:
            derived[field.name] = fields.pop(field.name)
        elif _mentions(hints[field.name], int):
            raise TypeError(
                f"{source.__name__}.{field.name}: an int may be a quantity; say how it is answered"
            )
        else:
            derived[field.name] = (hints[field.name], ...)
    model: type[Answer] = create_model(name, __base__=base, __module__=__name__, **derived, **fields)
    return model


def _mentions(hint: Any, kind: type) -> bool:
    return hint is kind or any(_mentions(arg, kind) for arg in get_args(hint))


# ----- errors -----

# What each error of the ledger answers; every other `LedgerError` is a rule violation (422).
STATUS_OF: dict[type[errors.LedgerError], int] = {
    errors.NotFoundError: 404,
    errors.AlreadyExistsError: 409,
    errors.IdempotencyKeyReusedError: 409,
    errors.ConcurrencyError: 409,
    errors.IntegrityViolationError: 409,
    errors.OutcomeUnknownError: 503,
}
# Codes the HTTP layer itself answers with, beside the ledger's errors.
API_CODES: dict[int, tuple[str, ...]] = {
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found",),
    413: ("payload_too_large",),
    422: ("validation_error",),
    503: ("projection_lag", "store_unavailable", "chain_unavailable"),
}


def _ledger_errors(cls: type[errors.LedgerError] = errors.LedgerError) -> list[type[errors.LedgerError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_ledger_errors(sub)]
    return found


def status_of(error: type[errors.LedgerError]) -> int:
    """The HTTP status of an error: its own or its nearest base's (a subclass keeps its base's)."""
    return next((STATUS_OF[c] for c in error.__mro__ if c in STATUS_OF), 422)


def codes_of(status: int) -> list[str]:
    """Every problem code answered with `status`."""
    ledger = {e.code for e in _ledger_errors() if status_of(e) == status}
    return sorted(ledger | set(API_CODES.get(status, ())))


class Problem(BaseModel):
    """An error as `application/problem+json` (RFC 9457); `code` is stable, `detail` is for people."""

    type: str = Field(description="`urn:ledger:problem:<code>`.")
    title: str
    status: int = Field(description="The HTTP status, repeated.")
    detail: str
    code: str = Field(description="What went wrong (the codes are listed when the document is built).")


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an operation that can answer these problems (each status's codes are
    listed when the document is built, once every module's errors are known)."""
    return {
        status: {"description": "Problem", "content": {PROBLEM: {"schema": PROBLEM_REF}}}
        for status in statuses
    }


QUERY = problems(401, 403, 404, 422, 503)
COMMAND = problems(401, 403, 404, 409, 413, 422, 503)


BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key (`ledger keys create`, `POST /v1/keys`) as `Authorization: Bearer <key>`.",
}


def install_document(api: FastAPI) -> None:
    """Completes the app's OpenAPI document: the problem schema the operations refer to, and the
    API key every `/v1` operation needs (read from the header directly, so FastAPI cannot see it)."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = build()
            components = document.setdefault("components", {})
            components.setdefault("schemas", {})["Problem"] = problem = Problem.model_json_schema()
            statuses = (401, 403, 404, 409, 413, 422, 503)
            every = sorted({code for status in statuses for code in codes_of(status)})
            problem["properties"]["code"]["description"] = f"What went wrong, one of: {', '.join(every)}."
            components["securitySchemes"] = {"apiKey": BEARER}
            for path, operations in document["paths"].items():
                for operation in operations.values():
                    _optional_body_without_null(operation)
                    for status, response in operation["responses"].items():
                        if response.get("content", {}).get(PROBLEM, {}).get("schema") == PROBLEM_REF:
                            response["description"] = "Problem: " + ", ".join(codes_of(int(status)))
                    if path.startswith("/v1/"):
                        operation["security"] = [{"apiKey": []}]
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def _optional_body_without_null(operation: dict[str, Any]) -> None:
    """An optional body (`body: PayIn | None = None`) is declared as the model alone, not
    `model | null`: generated clients send a left-out body as a JSON `null` they cannot encode.
    (A `null` body is still accepted; leaving the body out is the documented way.)"""
    body = operation.get("requestBody", {})
    for media in body.get("content", {}).values() if not body.get("required") else ():
        alternatives = media.get("schema", {}).get("anyOf", [])
        refs = [a for a in alternatives if "$ref" in a]
        if len(alternatives) == 2 and len(refs) == 1 and {"type": "null"} in alternatives:
            media["schema"] = refs[0]


# ----- commands: the new or touched resource's id and the position of the last event -----


class Command(Answer):
    position: Position = Field(description="The position of the command's last event.")


class AssetChanged(Command):
    asset_id: str


class InvestorChanged(Command):
    investor_id: str


class InvestmentPlaced(Command):
    investment_id: str
    status: str
    quantity: Quantity
    accepted_amount: Amount
    refund_amount: Amount


class InvestmentChanged(Command):
    investment_id: str
    status: str


class DistributionDeclared(Command):
    distribution_id: str


class DistributionPaid(Command):
    distribution_id: str
    paid_investor_ids: list[str]


class ProposalCreated(Command):
    proposal_id: str


class VoteCast(Command):
    proposal_id: str
    weight: Quantity


class ProposalClosed(Command):
    proposal_id: str
    result: str | None


class ReconciliationRecorded(Command):
    reconciliation_id: str


# ----- assets -----


class Token(Answer):
    chain_id: int
    token_address: str
    identity_registry: str


class Valuation(Answer):
    asset_id: str
    position: Position
    price_per_token: Amount
    valued_at: datetime
    source: str
    method: str | None
    recorded_at: datetime


def answered(terms: type[Terms]) -> dict[str, Any]:
    """The fields of a typed value of the ledger as an answer carries them (`create_model`'s form):
    in its order, each always present, quantities and money as strings of digits."""
    hints = get_type_hints(terms, include_extras=True)
    return {f.name: (_answered(hints[f.name]), ...) for f in dataclasses.fields(terms)}  # type: ignore[arg-type]


def _answered(hint: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        digits = next((m for m in args[1:] if isinstance(m, quantity.Digits)), None)
        return hint if digits is None else Amount if digits.money else Quantity
    if origin is Union or origin is UnionType:
        return Union[tuple(map(_answered, args))]  # noqa: UP007 (built at run time)
    if origin is tuple:
        return list[_answered(args[0])]  # type: ignore[misc]
    return hint


Asset = create_model(
    "Asset",
    __base__=ReadModel,
    __module__=__name__,
    **answered(AssetTerms),  # the terms, then what the read model adds
    status=(str, ...),
    offering_open=(bool, ...),
    paused=(bool, ...),
    total_supply=(Quantity, ...),
    holder_count=(int, ...),
    registered_position=(Position, ...),
    token=(Token | None, ...),
    latest_valuation=(Valuation | None, ...),
    market_cap=(Amount, ...),
    distribution_yield_bps=(Bps | None, ...),
)


class Valuations(ReadModel):
    asset_id: str
    valuations: list[Valuation]
    next_cursor: str | None


class CapTableHolder(Answer):
    investor_id: str
    quantity: Quantity
    frozen: Quantity
    ownership_bps: Bps


class CapTable(ReadModel):
    asset_id: str
    total_supply: Quantity
    holder_count: int
    holders: list[CapTableHolder]


class Freeze(Answer):
    asset_id: str
    investor_id: str
    frozen: Quantity
    address_frozen: bool


class Breach(Answer):
    kind: str
    investor_id: str | None
    detail: str


AssetCompliance = mirrored(
    AssetComplianceRow,
    "AssetCompliance",
    ReadModel,
    holder_count=(int, ...),
    max_holders=(int | None, ...),
    holders_by_country=(dict[str, int], Field(description="Holders per country.")),
    frozen_holders=(list[Freeze], ...),
    breaches=(list[Breach], ...),
)


# ----- investors -----


Investor = mirrored(InvestorRecord, "Investor", ReadModel)


class PortfolioTotals(Answer):
    invested_amount: Amount
    dividends_paid: Amount
    dividends_pending: Amount
    value: Amount
    unrealized_gain: SignedAmount
    total_return: SignedAmount
    dividend_yield_bps: Bps | None
    xirr_bps: Bps | None


class PortfolioPosition(PortfolioTotals):
    asset_id: str
    quantity: Quantity
    frozen: Quantity


class Portfolio(ReadModel):
    investor_id: str
    positions: list[PortfolioPosition]
    totals: PortfolioTotals


class HistoryPoint(Answer):
    position: Position
    date: date | None
    value: Amount
    invested_amount: Amount
    dividends_paid: Amount


class PortfolioHistory(ReadModel):
    investor_id: str
    asset_id: str | None
    points: list[HistoryPoint]


class Eligibility(Answer):
    asset_id: str
    eligible: bool
    reasons: list[str]


InvestorCompliance = mirrored(
    InvestorComplianceRow,
    "InvestorCompliance",
    ReadModel,
    eligibility=(list[Eligibility], ...),
    freezes=(list[Freeze], ...),
)


# ----- investments, distributions, proposals -----


class Investment(ReadModel):
    investment_id: str
    investor_id: str
    asset_id: str
    amount: Amount
    quantity: Quantity
    accepted_amount: Amount
    refund_amount: Amount
    status: str
    payment_ref: str | None
    placed_at: datetime
    placed_position: Position
    updated_position: Position


class Entitlement(Answer):
    investor_id: str
    amount: Amount
    paid: bool


class Distribution(ReadModel):
    distribution_id: str
    asset_id: str
    amount: Amount
    record_position: Position
    declared_position: Position
    entitlements: list[Entitlement]


class Proposal(ReadModel):
    proposal_id: str
    asset_id: str
    title: str
    options: list[str]
    quorum_bps: Bps
    closes_at: datetime | None
    status: str
    snapshot_position: Position
    supply_at_snapshot: Quantity
    tally: dict[str, Quantity] = Field(description="Voting weight per option.")
    votes_cast_weight: Quantity
    quorum_reached: bool
    result: str | None


# ----- reconciliations -----


class Difference(Answer):
    kind: str
    investor_id: str | None
    wallets: list[str]
    ledger: Any = Field(description="The ledger's side: a quantity, a flag, or null.")
    chain: Any = Field(
        description="The chain's side: a quantity, a flag, an unknown wallet's holdings, or null."
    )


class InFlightOperation(Answer):
    seq: int
    kind: str
    state: str
    position: Position | None
    payload: dict[str, Any]
    tx_hash: str | None
    block_number: int | None


class Reconciliation(ReadModel):
    reconciliation_id: str
    asset_id: str
    chain_id: int
    token: str
    final_block: int
    ledger_position: Position
    holders_checked: int
    differences: list[Difference]
    in_flight: list[InFlightOperation]
    position: Position


# ----- audit -----


class Actor(Answer):
    principal: str
    role: str | None
    investor_id: str | None
    request_id: str | None


class AuditEvent(Answer):
    position: Position
    stream_id: str
    version: int
    type: str
    occurred_at: datetime | None
    actor: Actor
    data: Annotated[
        dict[str, Any],
        AsIs(),
        Field(description="The event's fields; quantities and amounts as strings of digits."),
    ]
    hash: str | None


class AuditEvents(Answer):
    events: list[AuditEvent]
    next_after: Position = Field(description="Pass as `after` to continue the listing.")


class SignedHead(Answer):
    tree_size: int
    root: str
    timestamp: str
    key_id: str
    signature: str


class Anchor(Answer):
    head: SignedHead
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str


class Verification(Answer):
    """The hash chain recomputed (`head_position`, `head_hash`), or the store against a tree head
    (`tree_size`; with `anchor` when the head was read from the chain)."""

    ok: bool
    events_checked: int
    first_invalid_position: Position | None
    reason: str | None
    head_position: Position | None = None
    head_hash: str | None = None
    tree_size: int | None = None
    anchor: Anchor | None = None


class ProvenEvent(Answer):
    position: Position
    stream_id: str
    version: int
    topic: str
    state: str


class InclusionProof(Answer):
    kind: str
    tree_size: int
    leaf_index: int
    leaf_hash: str
    event: ProvenEvent
    path: list[str]


class ConsistencyProof(Answer):
    kind: str
    from_size: int
    tree_size: int
    path: list[str]


class SignedHeads(Answer):
    heads: list[SignedHead]


# ----- keys -----


ApiKey = mirrored(KeyInfo, "ApiKey")
ApiKeys = create_model("ApiKeys", __base__=Answer, __module__=__name__, keys=(list[ApiKey], ...))  # type: ignore[valid-type]
IssuedApiKey = mirrored(
    KeyInfo,
    "IssuedApiKey",
    key=(str | None, Field(description="The secret, shown once (null when the request is a replay).")),
    position=(Position, ...),
)
RevokedApiKey = mirrored(KeyInfo, "RevokedApiKey", position=(Position, ...))


# ----- health -----


class Health(Answer):
    status: str


class Readiness(Answer):
    """`ready`, else a stable reason (`store_unavailable`, `store_check_failed`,
    `projector_not_running`, `projection_failing`, `lagging`, `projection_stalled`)."""

    status: str
    head_position: Position | None = None
    lag: dict[str, int] | None = Field(default=None, description="Events behind the head, per read model.")
    detail: str | None = None
