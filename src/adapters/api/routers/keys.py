"""API keys (admin only): make, list, rotate, revoke. A key's secret is shown once, when it is
made or rotated; lists show ids, roles, times, never a secret."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import StrictInt, StrictStr

from adapters.api import responses
from adapters.api.common import Caller, IdempotencyKey, exact, require, services
from adapters.api.keys import KeyAdmin, KeyInfo
from adapters.api.schemas import Body
from ledger.errors import NotFoundError, ValidationError

router = APIRouter(prefix="/v1", tags=["keys"])
KEY_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_SECONDS = 10**10


class KeyIn(Body):
    role: StrictStr
    investor_id: StrictStr | None = None
    expires_in_seconds: StrictInt | None = None


class RotateIn(Body):
    grace_seconds: StrictInt | None = None


def _admin(request: Request) -> KeyAdmin:
    svc = services(request)
    return KeyAdmin(svc.ledger, svc.keys)


def _key_id(key_id: str) -> str:
    if not KEY_ID.match(key_id):
        raise NotFoundError(f"key {key_id} not found")
    return key_id


def _answer(request: Request, body: dict[str, Any], position: int, status: int = 200) -> JSONResponse:
    request.state.position = position  # for the request log
    services(request).metrics.command(request, "ok")
    answer = request.scope["route"].response_model
    return JSONResponse(exact({**body, "position": position}, answer), status_code=status)


def _seconds(value: int | None) -> timedelta | None:
    if value is not None and not 0 <= value <= MAX_SECONDS:
        raise ValidationError(f"a duration must be between 0 and {MAX_SECONDS} seconds")
    return None if value is None else timedelta(seconds=value)


def _shown(info: KeyInfo) -> dict[str, Any]:
    return exact(info, responses.ApiKey)  # type: ignore[no-any-return]


@router.post("/keys", status_code=201, response_model=responses.IssuedApiKey, responses=responses.COMMAND)
def create_key(request: Request, body: KeyIn, caller: Caller, key: IdempotencyKey = None) -> JSONResponse:
    """A new key, printed once (`key` is null when the request is a replay)."""
    require(caller)
    issued = _admin(request).create(body.role, body.investor_id, _seconds(body.expires_in_seconds), key)
    return _answer(request, {**_shown(issued.info), "key": issued.key}, issued.position, 201)


@router.get("/keys", response_model=responses.ApiKeys, responses=responses.QUERY)
def list_keys(request: Request, caller: Caller) -> JSONResponse:
    require(caller)
    return JSONResponse({"keys": [_shown(info) for info in services(request).keys.list()]})


@router.get("/keys/{key_id}", response_model=responses.ApiKey, responses=responses.QUERY)
def get_key(request: Request, key_id: str, caller: Caller) -> JSONResponse:
    require(caller)
    return JSONResponse(_shown(services(request).keys.get(_key_id(key_id))))


@router.post("/keys/{key_id}/rotate", response_model=responses.IssuedApiKey, responses=responses.COMMAND)
def rotate_key(
    request: Request, key_id: str, caller: Caller, body: RotateIn | None = None, key: IdempotencyKey = None
) -> JSONResponse:
    """A new secret for the key; the current one stays valid for `grace_seconds` (default 3600)."""
    require(caller)
    grace = _seconds(body.grace_seconds if body is not None else None)
    issued = _admin(request).rotate(_key_id(key_id), grace, key)
    return _answer(request, {**_shown(issued.info), "key": issued.key}, issued.position)


@router.post("/keys/{key_id}/revoke", response_model=responses.RevokedApiKey, responses=responses.COMMAND)
def revoke_key(request: Request, key_id: str, caller: Caller, key: IdempotencyKey = None) -> JSONResponse:
    """Refuses the key, with every secret it had, in every API process within a second."""
    require(caller)
    info, outcome = _admin(request).revoke(_key_id(key_id), key)
    return _answer(request, _shown(info), outcome.position)
