"""What every router shares: the services (`adapters.services`, built by `bootstrap`),
authentication, problem+json errors, exact integers, read-your-writes consistency."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from adapters.api.keys import Principal
from adapters.api.readpool import ReadPool
from adapters.api.responses import PROBLEM, QUERY
from adapters.services import Services as Services  # noqa: PLC0414 (re-exported for the routers)
from ledger.actor import Actor, set_actor
from ledger.commit import Outcome
from projections.schema import snapshot, view_position

WAIT_SECONDS = 5.0
# Integers that stay JSON numbers; every other integer (quantities, money) is a string of digits.
PLAIN_INTEGERS = frozenset(
    {
        "position",
        "as_of_position",
        "decimals",
        "holder_count",
        "max_holders",
        "ownership_bps",
        "quorum_bps",
        "chain_id",
        "lockup_seconds",
        "snapshot_position",
        "record_position",
        "declared_position",
        "events_checked",
        "head_position",
        "first_invalid_position",
        "next_after",
        "version",
        "status",
        "lag",
        "registered_position",
        "placed_position",
        "updated_position",
        "count",
        "dividend_yield_bps",
        "distribution_yield_bps",
        "xirr_bps",
    }
)
# Maps keyed by data (option names, countries): their values are named by what they hold.
MAP_VALUES = {"tally": "weight", "holders_by_country": "count", "lag": "lag"}


# The problems a read can answer (router default); commands add 409 and 413 (`responses.COMMAND`).
PROBLEMS = QUERY


class ApiError(Exception):
    """An HTTP-level problem (auth, not found, lag) with its problem+json code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def problem(status: int, code: str, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": f"urn:ledger:problem:{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        },
        status_code=status,
        media_type=PROBLEM,
    )


def exact(value: Any, key: str | None = None) -> Any:
    """JSON-ready: dataclasses and dicts recursively, quantities and amounts as strings of digits."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        if key in MAP_VALUES:
            return {k: exact(v, MAP_VALUES[key]) for k, v in value.items()}
        return {k: exact(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [exact(v, key) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if key in PLAIN_INTEGERS else str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    return value


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def read_pool(request: Request) -> ReadPool | None:
    """The event loop's own PostgreSQL read pool, if the app was started on this loop."""
    pool: ReadPool | None = request.app.state.read_pool
    return pool if pool is not None and pool.usable() else None


async def principal(request: Request) -> Principal:
    """The caller's key, checked on the event loop when remembered (no thread hop), else looked up.

    The header is read directly rather than declared: it is not in the document either way, and
    a declared parameter costs a validation on every request."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <api key>")
    keys = services(request).keys
    found = keys.remembered(token) or await run_in_threadpool(keys.authenticate, token)
    if found is None:
        raise ApiError(401, "unauthorized", "the API key is not valid")
    # The request's own context: its commands record this actor, its log line this key id.
    request.state.key_id = found.key_id
    set_actor(Actor(f"key:{found.key_id}", found.role, found.investor_id, request_id(request)))
    return found


def request_id(request: Request) -> str | None:
    """The id the request log gave this request (`adapters.api.requestlog`)."""
    found: str | None = getattr(request.state, "request_id", None)
    return found


Caller = Annotated[Principal, Depends(principal)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
MinPosition = Annotated[int | None, Query(ge=0, le=2**62, description="Wait until the read models reach it.")]


def require(caller: Principal, *roles: str, investor_id: str | None = None) -> None:
    """Admins may do everything; others only what their role (and own investor id) allows."""
    allowed = caller.role == "admin" or caller.role in roles
    own = caller.role != "investor" or investor_id is None or investor_id == caller.investor_id
    if allowed and own:
        return
    raise ApiError(403, "forbidden", f"a {caller.role} key may not do this")


def run_command(request: Request, action: Callable[[], Outcome], status: int = 200) -> JSONResponse:
    """Runs a command, counts its outcome (rejections are counted by the error handler)."""
    outcome = action()
    request.state.position = outcome.position  # for the request log
    services(request).metrics.command(request, "ok")
    return JSONResponse(exact({**outcome.result, "position": outcome.position}), status_code=status)


def wait_for(svc: Services, min_position: int | None) -> None:
    """Read-your-writes: waits until the read models reach `min_position`, else 503."""
    if min_position is not None and not svc.runner.wait_for(min_position, timeout=WAIT_SECONDS):
        raise ApiError(503, "projection_lag", f"read models have not reached position {min_position} yet")


@contextmanager
def consistent_read(svc: Services, min_position: int | None) -> Iterator[tuple[Connection, int]]:
    """A snapshot of the read models, once they have processed `min_position` (else 503)."""
    wait_for(svc, min_position)
    with snapshot(svc.runner.engine) as conn:
        yield conn, view_position(conn)


def read_response(body: Any, as_of: int) -> JSONResponse:
    payload = exact(body)
    payload["as_of_position"] = as_of
    return JSONResponse(payload)
