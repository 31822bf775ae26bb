"""Audit: the event history with its hashes, verification, and a live stream of committed events."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.utils import resolve_topic
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import Connection

from adapters.api import responses
from adapters.api.common import ApiError, Caller, event_data, exact, require, services
from adapters.chain.anchor import verify_anchored
from adapters.chain.rpc import RpcError
from ledger.actor import STATE_KEY as ACTOR
from ledger.actor import Actor
from ledger.application import LedgerApplication
from ledger.domain import values
from ledger.store import StoredRecord
from ledger.transparency import TreeHead, verify_against
from projections.schema import snapshot
from projections.streams import streams_of_asset, streams_of_investor

router = APIRouter(prefix="/v1", tags=["audit"])
SCAN_LIMIT = 20_000
HEARTBEAT_SECONDS = 15.0
INVESTOR_FIELDS = ("investor_id", "from_investor_id", "to_investor_id")
MAX_POSITION = 2**62
RETRY_SECONDS = (0.1, 5.0)  # the stream's back-off while the store is unreachable: first, most
logger = logging.getLogger(__name__)


@functools.cache
def _event_class(topic: str) -> type | None:
    try:
        found: type = resolve_topic(topic)
    except Exception:  # a topic no class answers to any more: its data is read untyped
        return None
    return found


def event_json(ledger: LedgerApplication, record: StoredRecord) -> dict[str, Any]:
    """One stored event as an auditor reads it: position, stream, version, type, time, who issued
    it (`unknown` for events from before actors were recorded), data (JSON-ready, as its class
    says), hash."""
    state = ledger.mapper.transcoder.decode(record.state)
    occurred_at = state.pop("timestamp", None)
    actor = Actor.from_state(state.pop(ACTOR, None))
    for internal in ("class_version", "originator_topic"):
        state.pop(internal, None)
    return {
        "position": record.position,
        "stream_id": str(record.stream_id),
        "version": record.version,
        "type": record.topic.rsplit(":", 1)[-1],
        "occurred_at": occurred_at,
        "actor": actor.as_state(),
        "data": event_data(_event_class(record.topic), state),
        "hash": record.hash.hex() if record.hash is not None else None,
    }


def related_streams(conn: Connection, asset_id: str | None, investor_id: str | None) -> dict[str, set[str]]:
    """The streams the read models know to be the asset's and the investor's (for `concerns`)."""
    return {
        "asset": streams_of_asset(conn, asset_id) if asset_id is not None else set(),
        "investor": streams_of_investor(conn, investor_id) if investor_id is not None else set(),
    }


def concerns(
    event: dict[str, Any], asset_id: str | None, investor_id: str | None, related: dict[str, set[str]]
) -> bool:
    """Whether an event belongs to the filtered asset and investor: its data names them, or its
    stream is theirs (by the read models, or by the stream's first event seen in this scan, for
    streams newer than the read models)."""
    data, stream = event["data"], event["stream_id"]
    names_asset = data.get("asset_id") == asset_id
    names_investor = (
        any(data.get(f) == investor_id for f in INVESTOR_FIELDS)
        or investor_id in data.get("entitlements", {})
        or investor_id in data.get("investor_ids", [])
    )
    if event["version"] == 1:  # a stream's first event names whom the whole stream is about
        if names_asset:
            related["asset"].add(stream)
        if names_investor:
            related["investor"].add(stream)
    return (asset_id is None or names_asset or stream in related["asset"]) and (
        investor_id is None or names_investor or stream in related["investor"]
    )


@router.get("/audit/events", response_model=responses.AuditEvents, responses=responses.QUERY)
def audit_events(
    request: Request,
    caller: Caller,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    asset_id: str | None = None,
    investor_id: str | None = None,
) -> JSONResponse:
    """Events after a position, oldest first; `next_after` continues the listing (also past a
    stretch with no match, so filtered listings never scan the whole history in one call)."""
    require(caller, "auditor")
    if asset_id is not None:
        values.asset_id(asset_id)
    if investor_id is not None:
        values.investor_id(investor_id)
    svc = services(request)
    ledger = svc.ledger
    with snapshot(svc.runner.engine) as conn:
        related = related_streams(conn, asset_id, investor_id)
    found: list[dict[str, Any]] = []
    next_after = after
    for record in itertools.islice(ledger.admin.records(after=after), SCAN_LIMIT):
        next_after = record.position
        event = event_json(ledger, record)
        if concerns(event, asset_id, investor_id, related):
            found.append(event)
            if len(found) == limit:
                break
    return JSONResponse(exact({"events": found, "next_after": next_after}, responses.AuditEvents))


@router.get("/audit/verify", response_model=responses.Verification, responses=responses.QUERY)
def audit_verify(
    request: Request,
    caller: Caller,
    tree_size: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    root: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
    anchored: bool = False,
    public_key: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
) -> JSONResponse:
    """The hash chain recomputed; with `tree_size` and `root` (a tree head the caller holds),
    the store's first `tree_size` events recomputed against that root instead; with
    `anchored=true` and the signer's `public_key`, against the largest head anchored on the
    chain whose signature verifies (read from the chain, not from the ledger's records)."""
    require(caller, "auditor")
    admin = services(request).ledger.admin
    if anchored:
        return _verify_anchored(request, public_key)
    if tree_size is None and root is None:
        return JSONResponse(admin.verify().as_dict())
    if tree_size is None or root is None:
        raise ApiError(422, "validation_error", "tree_size and root go together")
    head = TreeHead(tree_size, root, "", "", "")
    return JSONResponse(verify_against(admin, head, None).as_dict())


def _verify_anchored(request: Request, public_key: str | None) -> JSONResponse:
    from adapters.api.routers.reconciliations import chain_of

    if public_key is None:
        raise ApiError(422, "validation_error", "anchored=true needs the signer's public_key (64 hex digits)")
    chain = chain_of(request)
    if not chain.anchor_address:
        raise ApiError(503, "chain_unavailable", "no anchor contract is configured (LEDGER_ANCHOR_ADDRESS)")
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
    except ValueError:
        raise ApiError(422, "validation_error", "public_key is not an Ed25519 public key") from None
    try:
        found, result = verify_anchored(
            services(request).ledger.admin,
            chain.rpc,
            chain.anchor_address,
            public,
            chain.anchor_from_block,
            chain.confirmations,
        )
    except RpcError:
        raise ApiError(503, "chain_unavailable", "the chain node did not answer; retry later") from None
    return JSONResponse({**result.as_dict(), "anchor": found.as_dict() if found is not None else None})


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        **responses.QUERY,
        200: {
            "description": "Server-Sent Events: `id` the position, `event` the type, `data` an audit event.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
async def stream(
    request: Request,
    caller: Caller,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> StreamingResponse:
    """Server-Sent Events of committed events after a position (or the `Last-Event-ID` header),
    in order; a client that reconnects with its last position misses nothing. An idle client
    holds no worker thread: it waits on the event loop."""
    require(caller, "auditor")
    resumed = _last_event_id(request.headers.get("last-event-id"))
    start = after if after is not None else resumed
    ledger = services(request).ledger
    return StreamingResponse(_events(ledger, start), media_type="text/event-stream")


def _next_events(ledger: LedgerApplication, after: int) -> list[str]:
    lines = []
    for record in itertools.islice(ledger.admin.records(after=after), 500):
        event = exact(event_json(ledger, record), responses.AuditEvent)
        lines.append(f"id: {record.position}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n")
    return lines


def _last_event_id(header: str | None) -> int:
    """The position a reconnecting client last received (0 without one); anything but ASCII
    digits up to the largest position is refused before the stream starts."""
    if not header:
        return 0
    if re.fullmatch("[0-9]{1,19}", header) is None or int(header) > MAX_POSITION:
        raise ApiError(422, "validation_error", f"Last-Event-ID: a position from 0 to {MAX_POSITION}")
    return int(header)


async def _events(ledger: LedgerApplication, after: int) -> AsyncIterator[str]:
    quiet_since = time.monotonic()
    backoff = RETRY_SECONDS[0]
    while True:
        try:
            lines = await run_in_threadpool(_next_events, ledger, after)
        except Exception:  # the store is away: keep the stream open, go on from `after` later
            logger.exception("event stream: reading after %d failed; retrying in %.1f s", after, backoff)
            yield ": keep-alive\n\n"  # the client (and any proxy) sees the stream is alive
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_SECONDS[1])
            continue
        backoff = RETRY_SECONDS[0]
        for line in lines:
            yield line
            after = int(line[4 : line.index("\n")])
        if lines:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since > HEARTBEAT_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(0.1)
