"""The console's history: the stored events with filters, and their verification."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import urlencode

from eventsourcing.domain import Aggregate
from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.api.common import services
from adapters.console import queries
from adapters.console.pages import ASSET_ID, INVESTOR_ID, Signed, render
from adapters.console.tables import Column, Page, Table, facts
from ledger.domain.apikey import ApiKey
from ledger.domain.asset import Asset
from ledger.domain.chain import ChainLog, ChainMirror, ChainOperation, Reconciliation
from ledger.domain.distribution import Distribution
from ledger.domain.investment import Investment
from ledger.domain.investor import Investor, WalletClaim
from ledger.domain.proposal import Proposal
from ledger.errors import NotFoundError
from projections.schema import snapshot

router = APIRouter(prefix="/console", include_in_schema=False)
EVENTS_PER_PAGE = 100
AGGREGATES = (
    Asset, Investor, WalletClaim, Investment, Distribution, Proposal, ApiKey,
    ChainOperation, ChainLog, ChainMirror, Reconciliation,
)


def event_types() -> list[str]:
    """Every event type as the history names it (`Asset.TokensTransferred`), for the type filter:
    each aggregate's own events (not the library's generic `Event`, nor its `Created` where the
    aggregate names its creation otherwise)."""
    found = []
    for aggregate in AGGREGATES:
        events = {
            name: kind
            for name, kind in vars(aggregate).items()
            if isinstance(kind, type) and issubclass(kind, Aggregate.Event) and name != "Event"
        }
        if any(issubclass(kind, Aggregate.Created) for name, kind in events.items() if name != "Created"):
            events.pop("Created", None)
        found += [f"{aggregate.__name__}.{name}" for name in events]
    return sorted(found)


EVENT_COLUMNS = (
    Column("position", "Position", numeric=True),
    Column("type", "Type"),
    Column("occurred_at", "Occurred at"),
    Column("actor", "Actor"),
    Column("stream_id", "Stream"),
    Column("version", "Version", numeric=True),
    Column("hash", "Hash"),
    Column("data", "Data"),
)


def _position(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


@router.get("/history")
def history_page(request: Request, signed: Signed) -> Response:
    params = request.query_params
    entered = {name: params.get(name, "")[:200] for name in ("asset_id", "investor_id", "type", "from", "to")}
    problems = []
    if entered["asset_id"] and ASSET_ID.match(entered["asset_id"]) is None:
        problems.append("Asset: an asset id such as TOLL-JKT-01.")
    if entered["investor_id"] and INVESTOR_ID.match(entered["investor_id"]) is None:
        problems.append("Investor: an investor id such as inv-0001.")
    bounds = {name: _position(entered[name]) for name in ("from", "to")}
    for name, label in (("from", "From"), ("to", "To")):
        if entered[name].strip() and bounds[name] is None:
            problems.append(f"{label}: a position (digits).")
    events: list[dict[str, Any]] = []
    next_first = None
    if not problems:
        wanted = queries.HistoryFilter(
            entered["asset_id"] or None, entered["investor_id"] or None, entered["type"].strip() or None,
            bounds["from"], bounds["to"],
        )
        svc = services(request)
        with snapshot(svc.runner.engine) as conn:
            found = queries.history(svc.ledger, conn, wanted, EVENTS_PER_PAGE)
        events, next_first = found.events, found.next_first
    rows = [
        (
            e["position"], e["type"], e["occurred_at"], _actor(e["actor"]), e["stream_id"], e["version"],
            e["hash"], json.dumps(e["data"], sort_keys=True, default=str),
        )
        for e in events
    ]
    table = Table("events", "Events", EVENT_COLUMNS, rows, empty="No event matches.")
    following = None
    if next_first is not None:
        following = urlencode({**{k: v for k, v in entered.items() if v}, "from": next_first})
    return render(
        request, "history.html", Page("History", [table]), signed, 422 if problems else 200,
        entered=entered, problems=problems, following=following, event_types=event_types(),
    )


def _actor(actor: dict[str, Any] | None) -> str:
    if not actor:
        return "unknown"
    who = str(actor.get("principal") or "unknown")
    role = actor.get("role")
    return f"{who} ({role})" if role else who


@router.get("/history/verify")
def verify_page(request: Request, signed: Signed) -> Response:
    report = queries.verify(services(request).ledger)
    chain_table = facts(
        "hash-chain", "Hash chain, recomputed from every stored event", report.chain.as_dict().items()
    )
    head, check = report.head, report.head_check
    tree_rows: list[tuple[str, Any]] = [("tree_size", report.tree_size)]
    if head is not None and check is not None:
        tree_rows += [(f"signed_head_{k}", v) for k, v in head.as_dict().items() if k != "signature"]
        tree_rows += [(f"store_vs_head_{k}", v) for k, v in check.as_dict().items()]
    tree_table = facts(
        "merkle-tree",
        "Merkle tree and the newest signed tree head",
        tree_rows,
        note="" if head is not None else "No tree head has been signed yet (ledger audit sign).",
    )
    page = Page("Verify", [chain_table, tree_table])
    wanted = request.query_params.get("position", "").strip()
    problem = None
    if wanted:
        position = _position(wanted)
        try:
            if position is None:
                raise NotFoundError("a position is digits")
            page.tables += _inclusion_tables(queries.inclusion(services(request).ledger, position))
        except NotFoundError as error:
            problem = f"No inclusion proof: {error.detail}"
    return render(request, "verify.html", page, signed, report=report, position=wanted, problem=problem)


def _inclusion_tables(proof: queries.InclusionReport) -> list[Table]:
    summary = [(k, v) for k, v in dataclasses.asdict(proof).items() if k != "path"]
    return [
        facts("inclusion-proof", f"Inclusion proof of position {proof.position}", summary),
        Table(
            "audit-path",
            "Audit path, leaf to root",
            (Column("level", "Level", numeric=True), Column("hash", "Hash")),
            list(enumerate(proof.path)),
            empty="No path: the tree has this one event.",
        ),
    ]
