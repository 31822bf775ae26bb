"""Investors: registration, KYC, wallets and recovery; records, portfolios and compliance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adapters.api.common import (
    PROBLEMS,
    ApiError,
    Caller,
    IdempotencyKey,
    MinPosition,
    consistent_read,
    read_response,
    require,
    run_command,
    services,
    wait_for,
)
from adapters.api.schemas import InvestorIn, KycIn, RecoveryIn, WalletIn
from ledger.domain import values
from projections.compliance import investor_compliance
from projections.investors import investor_record
from projections.portfolio import portfolio_view

router = APIRouter(prefix="/v1/investors", tags=["investors"], responses=PROBLEMS)


@router.post("", status_code=201)
def register_investor(
    request: Request, body: InvestorIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    return run_command(
        request,
        lambda: ledger.register_investor(body.investor_id, body.country, body.wallet, body.accredited, key),
        201,
    )


@router.post("/{investor_id}/kyc")
def update_kyc(
    request: Request, investor_id: str, body: KycIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    return run_command(request, lambda: ledger.update_kyc(investor_id, body.status, body.expires_at, key))


@router.post("/{investor_id}/wallets")
def add_wallet(
    request: Request, investor_id: str, body: WalletIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.add_wallet(investor_id, body.wallet, key))


@router.post("/{investor_id}/recover")
def recover_wallet(
    request: Request, investor_id: str, body: RecoveryIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    return run_command(
        request, lambda: ledger.recover_wallet(investor_id, body.lost_wallet, body.new_wallet, key)
    )


def _investor(investor_id: str) -> str:
    values.investor_id(investor_id)
    return investor_id


@router.get("/{investor_id}")
def get_investor(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    with consistent_read(services(request), min_position) as (conn, as_of):
        record = investor_record(conn, _investor(investor_id))
    if record is None:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return read_response(record, as_of)


@router.get("/{investor_id}/portfolio")
def get_portfolio(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor", "investor", investor_id=investor_id)
    svc = services(request)
    wait_for(svc, min_position)
    with svc.runner.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        view = portfolio_view(conn, _investor(investor_id))
    if not view.investor_known:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return read_response({"investor_id": investor_id, "positions": view.positions}, view.as_of_position)


@router.get("/{investor_id}/compliance")
def get_investor_compliance(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor", "investor", investor_id=investor_id)
    svc = services(request)
    with consistent_read(svc, min_position) as (conn, as_of):
        view = investor_compliance(conn, _investor(investor_id), svc.ledger.clock())
    if view is None:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return read_response(view, as_of)
