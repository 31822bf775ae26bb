"""Assets: registration, lifecycle, freezes; catalogue, cap tables and compliance."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

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
from adapters.api.listing import CSV_RESPONSE, csv_lines, csv_response, wants_csv
from adapters.api.schemas import AssetIn, OfferingIn, QuantityIn, TokenIn, ValuationIn
from ledger.domain import values
from ledger.domain.terms import AssetTerms
from projections.analytics import asset_analytics, valuations_page
from projections.assets import asset_record
from projections.compliance import asset_compliance
from projections.holdings import cap_table_as_of, current_cap_table

router = APIRouter(prefix="/v1/assets", tags=["assets"])
CAP_TABLE_COLUMNS = ("investor_id", "quantity", "frozen", "ownership_bps")


@router.post("", status_code=201, response_model=responses.AssetChanged, responses=responses.COMMAND)
def register_asset(
    request: Request, body: AssetIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    return run_command(request, lambda: ledger.register_asset(AssetTerms.parse(body.model_dump()), key), 201)


@router.post("/{asset_id}/approve", response_model=responses.AssetChanged, responses=responses.COMMAND)
def approve_asset(
    request: Request, asset_id: str, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.approve_asset(asset_id, key))


@router.post("/{asset_id}/offering", response_model=responses.AssetChanged, responses=responses.COMMAND)
def set_offering(
    request: Request, asset_id: str, body: OfferingIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # an `OfferingChange`'s fields but the asset's id
    return run_command(request, lambda: ledger.set_offering(asset_id, given["open"], key))


@router.post("/{asset_id}/pause", response_model=responses.AssetChanged, responses=responses.COMMAND)
def pause_asset(request: Request, asset_id: str, caller: Caller, key: IdempotencyKey = None) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.pause_asset(asset_id, key))


@router.post("/{asset_id}/unpause", response_model=responses.AssetChanged, responses=responses.COMMAND)
def unpause_asset(
    request: Request, asset_id: str, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.unpause_asset(asset_id, key))


@router.post("/{asset_id}/token", response_model=responses.AssetChanged, responses=responses.COMMAND)
def bind_token(
    request: Request, asset_id: str, body: TokenIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `TokenBinding`'s fields but the asset's id
    return run_command(request, lambda: ledger.bind_token(asset_id, **given, idempotency_key=key))


@router.post(
    "/{asset_id}/holders/{investor_id}/freeze-tokens",
    response_model=responses.AssetChanged,
    responses=responses.COMMAND,
)
def freeze_tokens(
    request: Request,
    asset_id: str,
    investor_id: str,
    body: QuantityIn,
    caller: Caller,
    key: IdempotencyKey = None,
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `TokenFreeze`'s fields but those of the path
    return run_command(
        request, lambda: ledger.freeze_tokens(asset_id, investor_id, **given, idempotency_key=key)
    )


@router.post(
    "/{asset_id}/holders/{investor_id}/unfreeze-tokens",
    response_model=responses.AssetChanged,
    responses=responses.COMMAND,
)
def unfreeze_tokens(
    request: Request,
    asset_id: str,
    investor_id: str,
    body: QuantityIn,
    caller: Caller,
    key: IdempotencyKey = None,
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `TokenFreeze`'s fields but those of the path
    return run_command(
        request, lambda: ledger.unfreeze_tokens(asset_id, investor_id, **given, idempotency_key=key)
    )


@router.post(
    "/{asset_id}/holders/{investor_id}/freeze",
    response_model=responses.AssetChanged,
    responses=responses.COMMAND,
)
def freeze_investor(
    request: Request, asset_id: str, investor_id: str, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(request, lambda: services(request).ledger.freeze_investor(asset_id, investor_id, key))


@router.post(
    "/{asset_id}/holders/{investor_id}/unfreeze",
    response_model=responses.AssetChanged,
    responses=responses.COMMAND,
)
def unfreeze_investor(
    request: Request, asset_id: str, investor_id: str, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    return run_command(
        request, lambda: services(request).ledger.unfreeze_investor(asset_id, investor_id, key)
    )


@router.post(
    "/{asset_id}/valuations",
    status_code=201,
    response_model=responses.AssetChanged,
    responses=responses.COMMAND,
)
def record_valuation(
    request: Request, asset_id: str, body: ValuationIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    require(caller)
    ledger = services(request).ledger
    given = body.model_dump()  # a `ValuationReport`'s fields but the asset's id
    return run_command(request, lambda: ledger.record_valuation(asset_id, **given, idempotency_key=key), 201)


@router.get("/{asset_id}/valuations", response_model=responses.Valuations, responses=responses.QUERY)
def list_valuations(
    request: Request,
    asset_id: str,
    caller: Caller,
    min_position: MinPosition = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    """Every valuation of the asset in the order they were recorded (corrections included)."""
    require(caller, "auditor", "investor")
    values.asset_id(asset_id)
    after = decode_cursor(cursor)
    with consistent_read(services(request), min_position) as (conn, as_of):
        if asset_record(conn, asset_id) is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        page, more = valuations_page(conn, asset_id, after, limit)
    next_cursor = encode_cursor(page[-1].position) if more else None
    return read_response(
        {"asset_id": asset_id, "valuations": page, "next_cursor": next_cursor}, as_of, responses.Valuations
    )


@router.get("/{asset_id}", response_model=responses.Asset, responses=responses.QUERY)
def get_asset(
    request: Request, asset_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor", "investor")
    values.asset_id(asset_id)
    with consistent_read(services(request), min_position) as (conn, as_of):
        record = asset_record(conn, asset_id)
        if record is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        analytics = asset_analytics(
            conn, asset_id, record["total_supply"], record["decimals"], record["unit_price"]
        )
    return read_response(record | vars(analytics), as_of, responses.Asset)


@router.get(
    "/{asset_id}/cap-table", response_model=responses.CapTable, responses=responses.QUERY | CSV_RESPONSE
)
def get_cap_table(
    request: Request,
    asset_id: str,
    caller: Caller,
    min_position: MinPosition = None,
    as_of: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    """The cap table now, or as of a position; CSV (one row per holder) with Accept: text/csv."""
    require(caller, "auditor")
    values.asset_id(asset_id)
    with consistent_read(services(request), max(min_position or 0, as_of or 0) or None) as (conn, position):
        if asset_record(conn, asset_id) is None:
            raise ApiError(404, "not_found", f"asset {asset_id} not found")
        table = (
            current_cap_table(conn, asset_id, position)
            if as_of is None
            else cap_table_as_of(conn, asset_id, as_of)
        )
    if wants_csv(request):
        rows = ((h.investor_id, h.quantity, h.frozen, h.ownership_bps) for h in table.holders)
        lines = csv_lines(CAP_TABLE_COLUMNS, [rows])
        return csv_response(f"cap-table-{asset_id}", table.as_of_position, lines)
    body = {
        "asset_id": asset_id,
        "total_supply": table.total_supply,
        "holder_count": table.holder_count,
        "holders": table.holders,
    }
    return read_response(body, table.as_of_position, responses.CapTable)


@router.get("/{asset_id}/compliance", response_model=responses.AssetCompliance, responses=responses.QUERY)
def get_asset_compliance(
    request: Request, asset_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    values.asset_id(asset_id)
    svc = services(request)
    with consistent_read(svc, min_position) as (conn, as_of):
        view = asset_compliance(conn, asset_id, svc.ledger.clock())
    if view is None:
        raise ApiError(404, "not_found", f"asset {asset_id} not found")
    return read_response(view, as_of, responses.AssetCompliance)


def encode_cursor(position: int) -> str:
    """An opaque cursor: the position of the last valuation of a page."""
    return base64.urlsafe_b64encode(f"valuations:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        kind, _, position = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        )
        if kind == "valuations" and position.isascii() and position.isdigit() and len(position) < 20:
            return int(position)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ApiError(422, "validation_error", "cursor is not one this list gave")
