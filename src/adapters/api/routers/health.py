"""Liveness, readiness (store reachable and intact, projections running and keeping up) and
Prometheus metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from adapters.api.common import services
from adapters.api.responses import Health, Readiness
from ledger.selfcheck import refusal, structure_checks
from projections.runner import ProjectionRunner

router = APIRouter(tags=["health"])
READY_LAG = 10_000  # more events behind the head than this: not ready, however fast it moves
# Behind the head for this long without moving: the projections are stuck (a runner in another
# process, or a frozen one, is only seen through this). One that moves but ever slower than the
# writes ends beyond READY_LAG.
STALL_SECONDS = 10.0
logger = logging.getLogger(__name__)


@dataclass
class _Progress:
    """Since when the slowest view has stood at `position` (observed by readiness checks)."""

    position: int = -1
    since: float = 0.0

    def stalled(self, position: int, head: int, now: float) -> bool:
        if position != self.position or position >= head:
            self.position, self.since = position, now
        return position < head and now - self.since >= STALL_SECONDS


@router.get("/healthz", response_model=Health)
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready, with a stable reason as `status`."}},
)
def readyz(request: Request) -> JSONResponse:
    """200 `ready`, else 503 with a stable reason as `status`: `store_unavailable`,
    `store_check_failed`, `projector_not_running`, `projection_failing`, `lagging` or
    `projection_stalled` (details go
    to the log, never into the answer)."""
    svc = services(request)
    try:
        positions = svc.runner.positions()  # first: a store that is down refuses it at once
        head = svc.ledger.admin.head_position()  # (the event store's pool waits and retries)
        broken = refusal(structure_checks(svc.ledger.admin.sql.recorder))
    except Exception as error:  # readiness reports any failure of the store rather than raising it
        logger.warning("readyz: the store is unreachable: %s: %s", type(error).__name__, error)
        return JSONResponse({"status": "store_unavailable"}, status_code=503)
    if broken is not None:  # a history table, trigger or function dropped or changed since start
        logger.warning("readyz: store check failed: %s", broken)
        return JSONResponse({"status": "store_check_failed", "detail": broken}, status_code=503)
    lag = {name: head - position for name, position in positions.items()}
    progress: _Progress = getattr(request.app.state, "projection_progress", None) or _Progress()
    request.app.state.projection_progress = progress
    stalled = progress.stalled(min(positions.values(), default=head), head, time.monotonic())
    status = _status(svc.runner, max(lag.values(), default=0), stalled)
    if status != "ready":
        logger.warning("readyz: %s (lag %s; last error: %s)", status, lag, svc.runner.last_error)
    body: dict[str, object] = {"status": status, "head_position": head, "lag": lag}
    return JSONResponse(body, status_code=200 if status == "ready" else 503)


def _status(runner: ProjectionRunner, lag: int, stalled: bool) -> str:
    if runner.running is False:  # this process ran the projections and no longer does
        return "projector_not_running"
    if runner.last_error is not None:
        return "projection_failing"
    if lag > READY_LAG:
        return "lagging"
    return "projection_stalled" if stalled else "ready"


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    svc = services(request)
    return PlainTextResponse(svc.metrics.render(svc.runner.lag()), media_type="text/plain; version=0.0.4")
