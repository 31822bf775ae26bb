"""Investors: registration, KYC, wallets and recovery; records, portfolios and compliance."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adapters.api import responses
from adapters.api.common import (
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
from ledger.domain.terms import InvestorRegistration
from projections.compliance import investor_compliance
from projections.investors import investor_record
from projections.portfolio import (
    History,
    Portfolio,
    portfolio_history,
    portfolio_history_async,
    portfolio_view,
    portfolio_view_async,
)

router = APIRouter(prefix="/v1/investors", tags=["investors"])


@router.post("", status_code=201, response_model=responses.InvestorChanged, responses=responses.COMMAND)
def register_investor(
    request: Request, body: InvestorIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    return run_command(
        request,
        lambda: ledger.register_investor(InvestorRegistration.parse(body.model_dump()), idempotency_key=key),
        201,
    )


@router.post("/{investor_id}/kyc", response_model=responses.InvestorChanged, responses=responses.COMMAND)
def update_kyc(
    request: Request, investor_id: str, body: KycIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `KycDecision`'s fields but the investor's id
    return run_command(request, lambda: ledger.update_kyc(investor_id, **given, idempotency_key=key))


@router.post("/{investor_id}/wallets", response_model=responses.InvestorChanged, responses=responses.COMMAND)
def add_wallet(
    request: Request, investor_id: str, body: WalletIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `WalletAddition`'s fields but the investor's id
    return run_command(request, lambda: ledger.add_wallet(investor_id, **given, idempotency_key=key))


@router.post("/{investor_id}/recover", response_model=responses.InvestorChanged, responses=responses.COMMAND)
def recover_wallet(
    request: Request, investor_id: str, body: RecoveryIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `WalletRecovery`'s fields but the investor's id
    return run_command(request, lambda: ledger.recover_wallet(investor_id, **given, idempotency_key=key))


def _investor(investor_id: str) -> str:
    values.investor_id(investor_id)
    return investor_id


@router.get("/{investor_id}", response_model=responses.Investor, responses=responses.QUERY)
def get_investor(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    with consistent_read(services(request), min_position) as (conn, as_of):
        record = investor_record(conn, _investor(investor_id))
    if record is None:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return read_response(record, as_of, responses.Investor)


AsOf = Annotated[int | None, Query(ge=0, le=2**62, description="The portfolio as of this position.")]


@router.get("/{investor_id}/portfolio", response_model=responses.Portfolio, responses=responses.QUERY)
async def get_portfolio(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None, as_of: AsOf = None
) -> JSONResponse:
    """The hot read: on the event loop through plain psycopg on PostgreSQL, else in a worker thread."""
    require(caller, "auditor", "investor", investor_id=investor_id)
    svc = services(request)
    wait = max(min_position or 0, as_of or 0) or None
    if wait is not None:
        await run_in_threadpool(wait_for, svc, wait)
    _investor(investor_id)
    pool = read_pool(request)
    if pool is not None:
        view = await pool.read(lambda conn: portfolio_view_async(conn, investor_id, as_of))
    else:
        view = await run_in_threadpool(_portfolio_in_thread, svc, investor_id, as_of)
    if not view.investor_known:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return JSONResponse(portfolio_body(investor_id, view))


def portfolio_body(investor_id: str, view: Portfolio) -> dict[str, object]:
    """What `read_response` makes of the view, built directly (this is the hottest read):
    quantities and money as strings of digits, rates as plain integers."""
    positions = [
        {
            "asset_id": p.asset_id,
            "quantity": str(p.quantity),
            "frozen": str(p.frozen),
            "invested_amount": str(p.invested_amount),
            "dividends_paid": str(p.dividends_paid),
            "dividends_pending": str(p.dividends_pending),
            "value": str(p.value),
            "unrealized_gain": str(p.unrealized_gain),
            "total_return": str(p.total_return),
            "dividend_yield_bps": p.dividend_yield_bps,
            "xirr_bps": p.xirr_bps,
        }
        for p in view.positions
    ]
    t = view.totals
    totals = {
        "invested_amount": str(t.invested_amount),
        "dividends_paid": str(t.dividends_paid),
        "dividends_pending": str(t.dividends_pending),
        "value": str(t.value),
        "unrealized_gain": str(t.unrealized_gain),
        "total_return": str(t.total_return),
        "dividend_yield_bps": t.dividend_yield_bps,
        "xirr_bps": t.xirr_bps,
    }
    return {
        "investor_id": investor_id,
        "positions": positions,
        "totals": totals,
        "as_of_position": view.as_of_position,
    }


def _portfolio_in_thread(svc: Services, investor_id: str, as_of: int | None) -> Portfolio:
    with svc.runner.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return portfolio_view(conn, investor_id, as_of)


Bound = int | date | None


def _history_in_thread(
    svc: Services, investor_id: str, asset_id: str | None, low: Bound, high: Bound, points: int
) -> History:
    with svc.runner.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return portfolio_history(conn, investor_id, asset_id, low, high, points)


def _bound(value: str | None, name: str) -> Bound:
    """A chart's bound: a position (digits) or a date (YYYY-MM-DD)."""
    if value is None:
        return None
    if value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "validation_error", f"{name} must be a position or a YYYY-MM-DD date") from None


@router.get(
    "/{investor_id}/portfolio/history", response_model=responses.PortfolioHistory, responses=responses.QUERY
)
async def get_portfolio_history(
    request: Request,
    investor_id: str,
    caller: Caller,
    min_position: MinPosition = None,
    asset_id: Annotated[str | None, Query()] = None,
    start: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=20)] = None,
    points: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    """Value, invested amount and dividends paid at evenly spaced positions or dates, for a chart."""
    require(caller, "auditor", "investor", investor_id=investor_id)
    if asset_id is not None:
        values.asset_id(asset_id)
    low, high = _bound(start, "from"), _bound(end, "to")
    svc = services(request)
    if min_position is not None:
        await run_in_threadpool(wait_for, svc, min_position)
    _investor(investor_id)
    pool = read_pool(request)
    if pool is not None:  # as the portfolio: on the event loop through plain psycopg
        history = await pool.read(
            lambda conn: portfolio_history_async(conn, investor_id, asset_id, low, high, points)
        )
    else:
        history = await run_in_threadpool(_history_in_thread, svc, investor_id, asset_id, low, high, points)
    if not history.investor_known:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    chart = [
        {
            "position": p.position,
            "date": p.date,
            "value": str(p.value),
            "invested_amount": str(p.invested_amount),
            "dividends_paid": str(p.dividends_paid),
        }
        for p in history.points
    ]  # what `read_response` would make of them, built directly (up to 1,000 points)
    body = {"investor_id": investor_id, "asset_id": asset_id, "points": chart}
    return JSONResponse({**body, "as_of_position": history.as_of_position})


@router.get(
    "/{investor_id}/compliance", response_model=responses.InvestorCompliance, responses=responses.QUERY
)
def get_investor_compliance(
    request: Request, investor_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor", "investor", investor_id=investor_id)
    svc = services(request)
    with consistent_read(svc, min_position) as (conn, as_of):
        view = investor_compliance(conn, _investor(investor_id), svc.ledger.clock())
    if view is None:
        raise ApiError(404, "not_found", f"investor {investor_id} not found")
    return read_response(view, as_of, responses.InvestorCompliance)
