"""Liveness, readiness (store reachable and intact, projection lag) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from adapters.api.common import services
from ledger.selfcheck import refusal, structure_checks

router = APIRouter(tags=["health"])
READY_LAG = 10_000


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        head = svc.ledger.admin.head_position()
        lag = svc.runner.lag()
        broken = refusal(structure_checks(svc.ledger.admin.sql.recorder))
    except Exception as error:  # readiness reports any failure of the store rather than raising it
        return JSONResponse({"status": "unavailable", "detail": type(error).__name__}, status_code=503)
    if broken is not None:  # a history table, trigger or function dropped or changed since start
        return JSONResponse({"status": "store_check_failed", "detail": broken}, status_code=503)
    stalled = svc.runner.last_error
    ready = max(lag.values(), default=0) <= READY_LAG and stalled is None
    status = "ready" if ready else "projection_failing" if stalled else "lagging"
    body: dict[str, object] = {"status": status, "head_position": head, "lag": lag}
    if stalled is not None:
        body["detail"] = stalled
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    svc = services(request)
    return PlainTextResponse(svc.metrics.render(svc.runner.lag()), media_type="text/plain; version=0.0.4")
