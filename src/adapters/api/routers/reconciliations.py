"""Reconciliation of the ledger with the chain: run one, read a run, read an asset's latest."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from adapters.api import responses
from adapters.api.common import (
    ApiError,
    Caller,
    IdempotencyKey,
    MinPosition,
    consistent_read,
    request_id,
    require,
    services,
)
from adapters.chain.rpc import RpcUnavailableError
from adapters.chain.service import ChainService
from ledger.domain import values
from ledger.errors import InvalidStateError
from projections.chain import latest_reconciliation, reconciliation

router = APIRouter(prefix="/v1", tags=["reconciliations"])
logger = logging.getLogger(__name__)


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asset_id: StrictStr


def chain_of(request: Request) -> ChainService:
    chain: ChainService | None = getattr(request.app.state, "chain", None)
    if chain is None:
        raise ApiError(503, "chain_unavailable", "the chain adapter is off (LEDGER_CHAIN_RPC_URL is not set)")
    return chain


@router.post(
    "/reconciliations",
    status_code=201,
    response_model=responses.ReconciliationRecorded,
    responses=responses.COMMAND,
)
def run_reconciliation(
    request: Request, body: ReconciliationIn, caller: Caller, key: IdempotencyKey = None
) -> JSONResponse:
    """Mirrors the asset's token to the chain head, compares ledger and chain at the last final
    block and records the run; its report is at `GET /v1/reconciliations/{id}`."""
    require(caller)
    asset_id = values.asset_id(body.asset_id)
    svc = services(request)
    outcome = svc.ledger.replayed("reconcile", {"asset_id": asset_id}, key)
    if outcome is None:
        if svc.ledger.get_asset(asset_id).token is None:  # the ledger's own state, not a read model's
            raise InvalidStateError(f"asset {asset_id} is not bound to a token")
        chain = chain_of(request)
        try:
            outcome, _ = chain.reconcile(asset_id, key)
        except RpcUnavailableError:
            # The node's address and error stay in the log (under the request id), not in the answer.
            logger.warning("request %s: chain node unavailable", request_id(request), exc_info=True)
            raise ApiError(503, "chain_unavailable", "the chain node did not answer; retry later") from None
    request.state.position = outcome.position  # for the request log
    svc.metrics.command(request, "ok")
    return JSONResponse(
        {"reconciliation_id": outcome.result["reconciliation_id"], "position": outcome.position},
        status_code=201,
    )


@router.get(
    "/reconciliations/{reconciliation_id}", response_model=responses.Reconciliation, responses=responses.QUERY
)
def get_reconciliation(
    request: Request, reconciliation_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    ident = str(values.uuid_text(reconciliation_id, "reconciliation_id"))
    with consistent_read(services(request), min_position) as (conn, as_of):
        report = reconciliation(conn, ident)
    if report is None:
        raise ApiError(404, "not_found", f"reconciliation {reconciliation_id} not found")
    return JSONResponse(report | {"as_of_position": as_of})  # quantities in it are strings already


@router.get(
    "/assets/{asset_id}/reconciliations/latest",
    response_model=responses.Reconciliation,
    responses=responses.QUERY,
)
def get_latest_reconciliation(
    request: Request, asset_id: str, caller: Caller, min_position: MinPosition = None
) -> JSONResponse:
    require(caller, "auditor")
    ident = values.asset_id(asset_id)
    with consistent_read(services(request), min_position) as (conn, as_of):
        report = latest_reconciliation(conn, ident)
    if report is None:
        raise ApiError(404, "not_found", f"asset {asset_id} has no reconciliation")
    return JSONResponse(report | {"as_of_position": as_of})  # quantities in it are strings already
