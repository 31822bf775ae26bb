"""Distributions and votes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adapters.api import responses
from adapters.api.common import (
    ApiError,
    Caller,
    IdempotencyKey,
    MinPosition,
    consistent_read,
    read_response,
    require,
    run_command,
    services,
)
from adapters.api.schemas import DistributionIn, PayIn, ProposalIn, VoteIn
from ledger.domain import values
from projections.distributions import distribution_record
from projections.proposals import proposal_record

router = APIRouter(prefix="/v1", tags=["distributions and votes"])


@router.post(
    "/distributions",
    status_code=201,
    response_model=responses.DistributionDeclared,
    responses=responses.COMMAND,
)
def declare_distribution(
    request: Request, body: DistributionIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `DistributionDeclaration`'s fields
    return run_command(request, lambda: ledger.declare_distribution(**given, idempotency_key=key), 201)


@router.post(
    "/distributions/{distribution_id}/pay",
    response_model=responses.DistributionPaid,
    responses=responses.COMMAND,
)
def pay_distribution(
    request: Request,
    distribution_id: str,
    caller: Caller,
    body: PayIn | None = None,
    key: IdempotencyKey = None,
) -> JSONResponse:
    require(caller)
    given = body.model_dump() if body is not None else {}  # a `DistributionPayment`'s fields but the id
    ledger = services(request).ledger
    return run_command(
        request, lambda: ledger.pay_distribution(distribution_id, **given, idempotency_key=key)
    )


@router.get(
    "/distributions/{distribution_id}", response_model=responses.Distribution, responses=responses.QUERY
)
def get_distribution(
    request: Request, distribution_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    ident = str(values.uuid_text(distribution_id, "distribution_id"))
    with consistent_read(services(request), min_position) as (conn, as_of):
        record = distribution_record(conn, ident)
    if record is None:
        raise ApiError(404, "not_found", f"distribution {distribution_id} not found")
    return read_response(record, as_of, responses.Distribution)


@router.post(
    "/proposals", status_code=201, response_model=responses.ProposalCreated, responses=responses.COMMAND
)
def create_proposal(
    request: Request, body: ProposalIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `ProposalSubmission`'s fields
    return run_command(request, lambda: ledger.create_proposal(**given, idempotency_key=key), 201)


@router.post(
    "/proposals/{proposal_id}/votes",
    status_code=201,
    response_model=responses.VoteCast,
    responses=responses.COMMAND,
)
def cast_vote(
    request: Request, proposal_id: str, body: VoteIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    given = body.model_dump()  # a `Vote`'s fields but the proposal's id
    require(caller, "investor", investor_id=given["investor_id"])
    ledger = services(request).ledger
    return run_command(request, lambda: ledger.cast_vote(proposal_id, **given, idempotency_key=key), 201)


@router.post(
    "/proposals/{proposal_id}/close", response_model=responses.ProposalClosed, responses=responses.COMMAND
)
def close_proposal(
    request: Request, proposal_id: str, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.close_proposal(proposal_id, key))


@router.get("/proposals/{proposal_id}", response_model=responses.Proposal, responses=responses.QUERY)
def get_proposal(
    request: Request, proposal_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    ident = str(values.uuid_text(proposal_id, "proposal_id"))
    with consistent_read(services(request), min_position) as (conn, as_of):
        record = proposal_record(conn, ident)
    if record is None:
        raise ApiError(404, "not_found", f"proposal {proposal_id} not found")
    return read_response(record, as_of, responses.Proposal)
