"""Liveness, readiness (store reachable, projection lag) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from adapters.api.common import services

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
    except Exception as error:  # readiness reports any failure of the store rather than raising it
        return JSONResponse({"status": "unavailable", "detail": type(error).__name__}, status_code=503)
    ready = max(lag.values(), default=0) <= READY_LAG
    return JSONResponse(
        {"status": "ready" if ready else "lagging", "head_position": head, "lag": lag},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
def metrics(request: Request) -> Response:
    svc = services(request)
    return Response(svc.metrics.render(svc.runner.lag()), media_type="text/plain; version=0.0.4")
