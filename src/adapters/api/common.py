"""What every router shares: the services (`adapters.services`, built by `bootstrap`),
authentication, problem+json errors, answers written as their models say (exact integers),
read-your-writes consistency."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints
from uuid import UUID

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Connection

from adapters.api.keys import Principal
from adapters.api.readpool import ReadPool
from adapters.api.responses import PROBLEM, QUERY, AsIs
from adapters.services import Services as Services  # noqa: PLC0414 (re-exported for the routers)
from ledger.actor import Actor, set_actor
from ledger.commit import Outcome
from ledger.domain.quantity import Digits, Number
from projections.schema import snapshot, view_position

WAIT_SECONDS = 5.0
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


def exact(value: Any, shape: Any) -> Any:
    """`value` JSON-ready as `shape` (a response model, or a type of them) says: a `Quantity` as a
    string of digits, any other declared integer as a number, and an integer in untyped data
    (`Any`) as a string of digits; dataclasses and dicts field by field, in the value's order."""
    return encoder(shape)(value)


Encode = Callable[[Any], Any]


@functools.cache
def encoder(shape: Any) -> Encode:
    """How a value of `shape` is written (worked out once per shape)."""
    return _encoder(shape) or _plain


def _encoder(hint: Any) -> Encode | None:
    """None where the value needs no more than `_plain`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        if any(isinstance(m, Digits) for m in args[1:]):
            return _digits
        if any(isinstance(m, AsIs) for m in args[1:]):
            return _as_is
        return _encoder(args[0])
    if hint is Any:
        return _untyped
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return _model(hint)
    if origin is Union or origin is UnionType:
        found = [e for e in map(_encoder, args) if e is not None]
        if not found:
            return None
        first = found[0]
        return lambda v: None if v is None else first(v)
    if origin in (list, tuple, Sequence) and args:
        item = _encoder(args[0])
        return None if item is None else (lambda v: [item(x) for x in v])
    if origin is dict and len(args) == 2:
        each = _encoder(args[1])
        return None if each is None else (lambda v: {k: each(x) for k, x in v.items()})
    return None


def _model(model: type[BaseModel]) -> Encode:
    special: dict[str, Encode] = {}
    for name, info in model.model_fields.items():
        hint = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        found = _encoder(hint)
        if found is not None:
            special[name] = found

    def encode(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
        elif isinstance(value, dict):
            items = list(value.items())
        else:
            return _plain(value)
        return {k: special[k](v) if k in special else _plain(v) for k, v in items}

    return encode


def _digits(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else _plain(value)


def _as_is(value: Any) -> Any:
    return value


def _plain(value: Any, untyped: bool = False) -> Any:
    """JSON-ready: dataclasses and dicts recursively, times in RFC 3339, ids as text; integers as
    numbers, or (`untyped`) as strings of digits."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v, untyped) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, untyped) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value) if untyped else value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    return value


def _untyped(value: Any) -> Any:
    return _plain(value, untyped=True)


def event_data(event_class: type | None, data: dict[str, Any]) -> dict[str, Any]:
    """A stored event's data JSON-ready: read without a schema, so an integer is a string of
    digits unless the event's class says it is a `Count`."""
    counts = _counts(event_class) if event_class is not None else frozenset()
    return {k: _plain(v) if k in counts else _plain(v, untyped=True) for k, v in data.items()}


@functools.cache
def _counts(event_class: type) -> frozenset[str]:
    try:
        hints = get_type_hints(event_class, include_extras=True)
    except Exception:  # an event class whose annotations do not resolve says nothing
        return frozenset()
    return frozenset(name for name, hint in hints.items() if _marked(hint, Number))


def _marked(hint: Any, marker: type) -> bool:
    if get_origin(hint) is Annotated and any(isinstance(m, marker) for m in get_args(hint)[1:]):
        return True
    return any(_marked(arg, marker) for arg in get_args(hint))


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
    answer = request.scope["route"].response_model  # the operation's declared answer
    return JSONResponse(exact({**outcome.result, "position": outcome.position}, answer), status_code=status)


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


def read_response(body: Any, as_of: int, model: type[BaseModel]) -> JSONResponse:
    payload = exact(body, model)
    payload["as_of_position"] = as_of
    return JSONResponse(payload)
