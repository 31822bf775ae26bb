"""Investors: registration, KYC, wallets and recovery; records, portfolios and compliance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adapters.api.common import (
    PROBLEMS,
    ApiError,
    Caller,
    IdempotencyKey,
    MinPosition,
    Services,
    consistent_read,
    read_pool,
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
from projections.portfolio import Portfolio, portfolio_view, portfolio_view_async

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
async def get_portfolio(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    """The hot read: on the event loop through plain psycopg on PostgreSQL, else in a worker thread."""
    require(caller, "auditor", "investor", investor_id=investor_id)
    svc = services(request)
    if min_position is not None:
        await run_in_threadpool(wait_for, svc, min_position)
    _investor(investor_id)
    pool = read_pool(request)
    if pool is not None:
        view = await pool.read(lambda conn: portfolio_view_async(conn, investor_id))
    else:
        view = await run_in_threadpool(_portfolio_in_thread, svc, investor_id)
    if not view.investor_known:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return JSONResponse(portfolio_body(investor_id, view))


def portfolio_body(investor_id: str, view: Portfolio) -> dict[str, object]:
    """What `read_response` makes of the view, built directly (this is the hottest read):
    quantities and money as strings of digits."""
    positions = [
        {
            "asset_id": p.asset_id,
            "quantity": str(p.quantity),
            "frozen": str(p.frozen),
            "invested_amount": str(p.invested_amount),
            "dividends_paid": str(p.dividends_paid),
            "dividends_pending": str(p.dividends_pending),
            "value": str(p.value),
        }
        for p in view.positions
    ]
    return {"investor_id": investor_id, "positions": positions, "as_of_position": view.as_of_position}


def _portfolio_in_thread(svc: Services, investor_id: str) -> Portfolio:
    with svc.runner.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return portfolio_view(conn, investor_id)


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
