"""Verifiable history: inclusion and consistency proofs and the signed tree heads (SPEC 4.7, 5)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adapters.api import responses
from adapters.api.common import Caller, require, services

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Size = Annotated[int | None, Query(ge=1, le=2**62, description="A tree size (default: the whole log).")]


@router.get("/proofs/inclusion", response_model=responses.InclusionProof, responses=responses.QUERY)
async def inclusion_proof(
    request: Request, caller: Caller, position: Annotated[int, Query(ge=1, le=2**62)], tree_size: Size = None
) -> JSONResponse:
    """The event at `position`, its leaf hash and its audit path in the tree of `tree_size` events."""
    require(caller, "auditor")
    log = services(request).ledger.transparency
    return JSONResponse(await run_in_threadpool(log.inclusion, position, tree_size))


@router.get("/proofs/consistency", response_model=responses.ConsistencyProof, responses=responses.QUERY)
async def consistency_proof(
    request: Request,
    caller: Caller,
    from_size: Annotated[int, Query(ge=0, le=2**62)],
    to_size: Size = None,
) -> JSONResponse:
    """The proof that the tree of `from_size` events is a prefix of the tree of `to_size`."""
    require(caller, "auditor")
    log = services(request).ledger.transparency
    return JSONResponse(await run_in_threadpool(log.consistency, from_size, to_size))


@router.get("/heads", response_model=responses.SignedHeads, responses=responses.QUERY)
async def signed_heads(
    request: Request, caller: Caller, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> JSONResponse:
    """The signed tree heads, newest first."""
    require(caller, "auditor")
    log = services(request).ledger.transparency
    heads = await run_in_threadpool(log.signed_heads, limit)
    return JSONResponse({"heads": [head.as_dict() for head in heads]})
