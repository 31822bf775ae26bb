"""Investments, transfers and redemptions."""

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
from adapters.api.schemas import InvestmentIn, PaymentIn, RedemptionIn, TransferIn
from ledger.domain import values
from projections.investors import investment_record

router = APIRouter(prefix="/v1", tags=["investments and transfers"])


@router.post(
    "/investments", status_code=201, response_model=responses.InvestmentPlaced, responses=responses.COMMAND
)
def place_investment(
    request: Request, body: InvestmentIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # an `InvestmentOrder`'s fields
    return run_command(request, lambda: ledger.place_investment(**given, idempotency_key=key), 201)


@router.post(
    "/investments/{investment_id}/confirm-payment",
    response_model=responses.InvestmentChanged,
    responses=responses.COMMAND,
)
def confirm_payment(
    request: Request, investment_id: str, body: PaymentIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `PaymentConfirmation`'s fields but the investment's id
    return run_command(request, lambda: ledger.confirm_payment(investment_id, **given, idempotency_key=key))


@router.post(
    "/investments/{investment_id}/cancel",
    response_model=responses.InvestmentChanged,
    responses=responses.COMMAND,
)
def cancel_investment(
    request: Request, investment_id: str, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.cancel_investment(investment_id, key))


@router.get("/investments/{investment_id}", response_model=responses.Investment, responses=responses.QUERY)
def get_investment(
    request: Request, investment_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    ident = str(values.uuid_text(investment_id, "investment_id"))
    with consistent_read(services(request), min_position) as (conn, as_of):
        record = investment_record(conn, ident)
    if record is None:
        raise ApiError(404, "not_found", f"investment {investment_id} not found")
    return read_response(record, as_of, responses.Investment)


@router.post(
    "/transfers", status_code=201, response_model=responses.AssetChanged, responses=responses.COMMAND
)
def transfer(request: Request, body: TransferIn, caller: Caller, key: IdempotencyKey = None) -> JSONResponse:
    given = body.model_dump()  # a `TransferOrder`'s fields
    if given["forced"]:
        require(caller)
    else:
        require(caller, "investor", investor_id=given["from_investor_id"])
    ledger = services(request).ledger
    return run_command(request, lambda: ledger.transfer(**given, idempotency_key=key), 201)


@router.post(
    "/redemptions", status_code=201, response_model=responses.AssetChanged, responses=responses.COMMAND
)
def redeem(request: Request, body: RedemptionIn, caller: Caller, key: IdempotencyKey = None) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `RedemptionOrder`'s fields
    return run_command(request, lambda: ledger.redeem(**given, idempotency_key=key), 201)
