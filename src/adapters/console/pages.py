"""The console's pages under /console: sign-in and sign-out, assets, investors, history, verify.

Every page is read-only and built from `queries` on one snapshot of the read models; each table
it shows is also served as CSV (`?csv=<table name>`) from the same rows.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from adapters.api.common import Services, services
from adapters.console import queries, session
from adapters.console.session import Session
from adapters.console.tables import Column, Page, Table, cell_text, line_chart, to_csv
from projections.analytics import day_of
from projections.schema import snapshot

HERE = Path(__file__).parent
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
templates.filters["cell"] = cell_text
templates.filters["quote"] = lambda value: quote(str(value), safe="")
router = APIRouter(prefix="/console", include_in_schema=False)
Signed = Annotated[Session, Depends(session.current)]
ASSET_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
INVESTOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
INVESTORS_PER_PAGE = 100
EVENTS_PER_PAGE = 100


def render(
    request: Request, name: str, page: Page, signed: Session | None, status: int = 200, **context: Any
) -> Response:
    """The page as HTML, or one of its tables as CSV when `?csv=<table name>` asks for it."""
    wanted = request.query_params.get("csv")
    if wanted is not None and signed is not None:
        table = page.table(wanted)
        if table is None:
            return _html(request, "error.html", Page("Not found"), signed, 404, message="No such table.")
        filename = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{page.title}-{table.name}").strip("-")
        return Response(
            to_csv(table),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return _html(request, name, page, signed, status, **context)


def _html(
    request: Request, name: str, page: Page, signed: Session | None, status: int, **context: Any
) -> Response:
    csrf = signed.csrf if signed is not None else session.csrf_token(request)
    body = templates.get_template(name).render(
        page=page, signed=signed, csrf=csrf, path=request.url.path, query=_csv_query(request), **context
    )
    response = HTMLResponse(body, status_code=status, headers=HEADERS)
    session.keep_csrf(response, request)
    return response


def _csv_query(request: Request) -> str:
    """The page's query string, for its CSV links (`&csv=<name>` is appended)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "csv"]
    return urlencode(kept)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def not_found(request: Request, signed: Session, what: str) -> Response:
    return _html(request, "error.html", Page("Not found"), signed, 404, message=f"{what} not found.")


# ----- signing in and out -----


@router.get("")
def home(signed: Signed) -> RedirectResponse:
    return see_other("/console/assets")


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _html(request, "sign_in.html", Page("Sign in"), None, 200)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await session.form(request)
    token = fields.get("key", "")
    principal = await session.key_principal(request, token) if token else None
    if principal is None:
        message = "That is not a valid API key (or it was revoked or has expired)."
        return _html(request, "sign_in.html", Page("Sign in"), None, 401, message=message)
    if principal.role not in session.ROLES:
        role = principal.role.capitalize()
        message = f"{role} keys cannot sign in to the console: use an auditor or admin key."
        return _html(request, "sign_in.html", Page("Sign in"), None, 403, message=message)
    response = see_other("/console/assets")
    session.start(response, request, principal, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await session.form(request)
    response = see_other("/console/sign-in")
    session.end(response)
    return response


# ----- assets -----

ASSET_COLUMNS = (
    Column("asset_id", "Asset", link="/console/assets/{}"),
    Column("name", "Name"),
    Column("status", "Status"),
    Column("paused", "Paused"),
    Column("offering_open", "Offering open"),
    Column("currency", "Currency"),
    Column("total_supply", "Supply", numeric=True),
    Column("holder_count", "Holders", numeric=True),
)


@router.get("/assets")
def assets_page(request: Request, signed: Signed) -> Response:
    svc = services(request)
    with snapshot(svc.runner.engine) as conn:
        position = queries.head(conn)
        rows = [
            (
                a.asset_id, a.name, a.status, a.paused, a.offering_open, a.currency,
                a.total_supply, a.holder_count,
            )
            for a in queries.asset_summaries(conn)
        ]
    page = Page("Assets", [Table("assets", f"Assets as of position {position}", ASSET_COLUMNS, rows)])
    return render(request, "tables.html", page, signed, position=position)


def _as_of(text: str | None, conn: Any, head: int) -> tuple[int | None, str | None]:
    """The position an "as of" entry names (a position, or a date: its last position), or an error."""
    if not text or not text.strip():
        return None, None
    text = text.strip()
    if text.isascii() and text.isdigit() and len(text) < 19:
        return min(int(text), head), None
    try:
        return queries.position_of_date(conn, date.fromisoformat(text), head), None
    except ValueError:
        return None, "As of: a position (digits) or a date (YYYY-MM-DD)."


@router.get("/assets/{asset_id}")
def asset_page(request: Request, asset_id: str, signed: Signed) -> Response:
    if ASSET_ID.match(asset_id) is None:
        return not_found(request, signed, f"Asset {asset_id}")
    svc = services(request)
    with snapshot(svc.runner.engine) as conn:
        record = queries.asset(conn, asset_id)
        if record is None:
            return not_found(request, signed, f"Asset {asset_id}")
        head = queries.head(conn)
        as_of, problem = _as_of(request.query_params.get("as_of"), conn, head)
        table = queries.cap_table(conn, asset_id, as_of, head)
        shown = head if as_of is None else min(as_of, head)
        day = day_of(conn, shown)
        before, after = queries.neighbours(conn, asset_id, shown)
        history = queries.supply_history(conn, asset_id)
        page = _asset_tables(conn, svc, asset_id, table, shown, day, history)
    chart = line_chart(
        [p.position for p in history],
        {"supply": [p.total_supply for p in history], "holders": [p.holder_count for p in history]},
        mark=shown if shown < head else None,
    )
    return render(
        request, "asset.html", page, signed, 422 if problem else 200,
        asset=record, head=head, shown=shown, day=date.fromordinal(day) if day else None,
        before=before, after=after if after is not None and after <= head else None,
        as_of_text=request.query_params.get("as_of", ""), problem=problem, chart=chart,
    )


def _asset_tables(
    conn: Any,
    svc: Services,
    asset_id: str,
    table: queries.CapTable,
    shown: int,
    day: int,
    history: list[queries.SupplyPoint],
) -> Page:
    when = f"as of position {shown}" + (f" ({date.fromordinal(day).isoformat()})" if day else "")
    page = Page(asset_id)
    page.tables.append(
        Table(
            "cap-table",
            f"Cap table {when}: supply {table.total_supply}, {table.holder_count} holders",
            (
                Column("investor_id", "Investor", link="/console/investors/{}"),
                Column("quantity", "Quantity", numeric=True),
                Column("frozen", "Frozen", numeric=True),
                Column("ownership_bps", "Ownership (bps)", numeric=True),
            ),
            [(h.investor_id, h.quantity, h.frozen, h.ownership_bps) for h in table.holders],
            empty="No holders at this position.",
        )
    )
    checked = queries.compliance(conn, asset_id, svc.ledger.clock())
    if checked is not None:
        limit = f" (limit {checked.max_holders})" if checked.max_holders is not None else ""
        page.tables += [
            Table(
                "holders-by-country",
                f"Holders by country, now: {checked.holder_count} holders{limit}",
                (Column("country", "Country"), Column("holders", "Holders", numeric=True)),
                list(checked.holders_by_country.items()),
            ),
            Table(
                "breaches",
                "Compliance breaches, now",
                (Column("kind", "Kind"), Column("investor_id", "Investor"), Column("detail", "Detail")),
                [(b.kind, b.investor_id, b.detail) for b in checked.breaches],
                empty="No breaches.",
            ),
            Table(
                "freezes",
                "Frozen holders, now",
                (
                    Column("investor_id", "Investor", link="/console/investors/{}"),
                    Column("frozen", "Frozen tokens", numeric=True),
                    Column("address_frozen", "Address frozen"),
                ),
                [(f.investor_id, f.frozen, f.address_frozen) for f in checked.frozen_holders],
                empty="No freezes.",
            ),
        ]
    page.tables += _distribution_tables(queries.distributions_of(conn, asset_id))
    page.tables += _proposal_tables(queries.proposals_of(conn, asset_id))
    page.tables += _reconciliation_tables(queries.reconciliation(conn, asset_id))
    page.tables.append(
        Table(
            "supply-history",
            "Supply and holders over positions",
            (
                Column("position", "Position", numeric=True),
                Column("total_supply", "Supply", numeric=True),
                Column("holder_count", "Holders", numeric=True),
            ),
            [(p.position, p.total_supply, p.holder_count) for p in history],
            empty="No tokens issued yet.",
        )
    )
    return page


def _distribution_tables(found: list[queries.DistributionRecord]) -> list[Table]:
    return [
        Table(
            "distributions",
            "Distributions",
            (
                Column("distribution_id", "Distribution"),
                Column("amount", "Amount", numeric=True),
                Column("record_position", "Record position", numeric=True),
                Column("declared_position", "Declared at", numeric=True),
                Column("entitled", "Entitled holders", numeric=True),
                Column("paid", "Paid", numeric=True),
            ),
            [
                (
                    d.distribution_id, d.amount, d.record_position, d.declared_position,
                    len(d.entitlements), sum(e.paid for e in d.entitlements),
                )
                for d in found
            ],
            empty="No distributions.",
        ),
        Table(
            "entitlements",
            "Entitlements",
            (
                Column("distribution_id", "Distribution"),
                Column("investor_id", "Investor", link="/console/investors/{}"),
                Column("amount", "Amount", numeric=True),
                Column("paid", "Paid"),
            ),
            [(d.distribution_id, e.investor_id, e.amount, e.paid) for d in found for e in d.entitlements],
            empty="No entitlements.",
        ),
    ]


def _proposal_tables(found: list[queries.ProposalRecord]) -> list[Table]:
    return [
        Table(
            "proposals",
            "Proposals",
            (
                Column("proposal_id", "Proposal"),
                Column("title", "Title"),
                Column("status", "Status"),
                Column("snapshot_position", "Snapshot", numeric=True),
                Column("quorum_bps", "Quorum (bps)", numeric=True),
                Column("votes_cast_weight", "Votes cast", numeric=True),
                Column("quorum_reached", "Quorum reached"),
                Column("result", "Result"),
            ),
            [
                (
                    p.proposal_id, p.title, p.status, p.snapshot_position, p.quorum_bps,
                    p.votes_cast_weight, p.quorum_reached, p.result,
                )
                for p in found
            ],
            empty="No proposals.",
        ),
        Table(
            "tallies",
            "Tallies",
            (
                Column("proposal_id", "Proposal"),
                Column("option", "Option"),
                Column("weight", "Weight", numeric=True),
            ),
            [(p.proposal_id, option, weight) for p in found for option, weight in p.tally.items()],
            empty="No votes.",
        ),
    ]


def _reconciliation_tables(report: dict[str, Any] | None) -> list[Table]:
    summary = (
        [
            (
                report["reconciliation_id"], report["final_block"], report["ledger_position"],
                report["holders_checked"], len(report["differences"]), len(report["in_flight"]),
            )
        ]
        if report is not None
        else []
    )
    return [
        Table(
            "reconciliation",
            "Latest reconciliation with the chain",
            (
                Column("reconciliation_id", "Reconciliation"),
                Column("final_block", "Final block", numeric=True),
                Column("ledger_position", "Ledger position", numeric=True),
                Column("holders_checked", "Holders checked", numeric=True),
                Column("differences", "Differences", numeric=True),
                Column("in_flight", "In flight", numeric=True),
            ),
            summary,
            empty="Never reconciled (the asset is not on a chain, or no run yet).",
        ),
        Table(
            "differences",
            "Differences found by the latest reconciliation",
            (
                Column("kind", "Kind"),
                Column("investor_id", "Investor"),
                Column("wallets", "Wallets"),
                Column("ledger", "Ledger"),
                Column("chain", "Chain"),
            ),
            [
                (d["kind"], d["investor_id"], " ".join(d["wallets"]), d["ledger"], d["chain"])
                for d in (report or {}).get("differences", [])
            ],
            empty="No differences.",
        ),
    ]


# ----- investors -----


@router.get("/investors")
def investors_page(request: Request, signed: Signed) -> Response:
    prefix = request.query_params.get("q", "").strip()[:64]
    number = request.query_params.get("page", "1")
    page_number = int(number) if number.isascii() and number.isdigit() and 0 < len(number) < 7 else 1
    page_number = max(1, page_number)
    with snapshot(services(request).runner.engine) as conn:
        found = queries.investor_summaries(
            conn, prefix, (page_number - 1) * INVESTORS_PER_PAGE, INVESTORS_PER_PAGE + 1
        )
    rows = [(i.investor_id, i.country, i.kyc_status, i.accredited) for i in found[:INVESTORS_PER_PAGE]]
    table = Table(
        "investors",
        f"Investors, page {page_number}",
        (
            Column("investor_id", "Investor", link="/console/investors/{}"),
            Column("country", "Country"),
            Column("kyc_status", "KYC"),
            Column("accredited", "Accredited"),
        ),
        rows,
        empty="No investor matches.",
    )
    more = len(found) > INVESTORS_PER_PAGE
    return render(
        request, "investors.html", Page("Investors", [table]), signed,
        prefix=prefix, page_number=page_number, more=more,
    )


@router.get("/investors/{investor_id}")
def investor_page(request: Request, investor_id: str, signed: Signed) -> Response:
    if INVESTOR_ID.match(investor_id) is None:
        return not_found(request, signed, f"Investor {investor_id}")
    svc = services(request)
    with snapshot(svc.runner.engine) as conn:
        record = queries.investor(conn, investor_id)
        if record is None:
            return not_found(request, signed, f"Investor {investor_id}")
        position = queries.head(conn)
        held = queries.portfolio(conn, investor_id)
        checked = queries.eligibility(conn, investor_id, svc.ledger.clock())
        movements = queries.statement(conn, investor_id)
    registration = Table(
        "registration",
        "Registration and KYC",
        (Column("field", "Field"), Column("value", "Value")),
        [
            ("investor_id", record.investor_id),
            ("country", record.country),
            ("accredited", record.accredited),
            ("registered_at", record.registered_at),
            ("kyc_status", record.kyc_status),
            ("kyc_expires_at", record.kyc_expires_at),
        ],
    )
    wallets = Table(
        "wallets",
        "Wallets",
        (Column("wallet", "Wallet"), Column("active", "Active")),
        [(w, True) for w in record.wallets] + [(w, False) for w in record.lost_wallets],
    )
    portfolio = Table(
        "portfolio",
        f"Portfolio as of position {held.as_of_position}",
        (
            Column("asset_id", "Asset", link="/console/assets/{}"),
            Column("quantity", "Quantity", numeric=True),
            Column("frozen", "Frozen", numeric=True),
            Column("invested_amount", "Invested", numeric=True),
            Column("value", "Value", numeric=True),
            Column("dividends_paid", "Dividends paid", numeric=True),
            Column("dividends_pending", "Dividends pending", numeric=True),
            Column("total_return", "Total return", numeric=True),
        ),
        [
            (
                p.asset_id, p.quantity, p.frozen, p.invested_amount, p.value,
                p.dividends_paid, p.dividends_pending, p.total_return,
            )
            for p in held.positions
        ],
        empty="No holdings.",
    )
    eligibility = Table(
        "eligibility",
        "Eligibility per asset, now",
        (Column("asset_id", "Asset"), Column("eligible", "Eligible"), Column("reasons", "Reasons")),
        [(e.asset_id, e.eligible, "; ".join(e.reasons)) for e in (checked.eligibility if checked else [])],
    )
    statement = Table(
        "statement",
        "Statement: every movement, with the balance after it",
        (
            Column("position", "Position", numeric=True),
            Column("date", "Date"),
            Column("asset_id", "Asset", link="/console/assets/{}"),
            Column("kind", "Movement"),
            Column("counterparty", "Counterparty", link="/console/investors/{}"),
            Column("quantity", "Tokens", numeric=True),
            Column("balance_after", "Balance after", numeric=True),
            Column("frozen_after", "Frozen after", numeric=True),
            Column("cash", "Cash", numeric=True),
        ),
        [
            (m.position, m.day, m.asset_id, m.kind, m.counterparty, m.quantity, m.balance, m.frozen, m.cash)
            for m in movements
        ],
        empty="No movements.",
    )
    page = Page(investor_id, [registration, wallets, portfolio, eligibility, statement])
    return render(request, "tables.html", page, signed, position=position, heading=f"Investor {investor_id}")


# ----- history -----

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
        entered=entered, problems=problems, following=following,
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
    chain = report.chain
    chain_table = Table(
        "hash-chain",
        "Hash chain, recomputed from every stored event",
        (Column("field", "Field"), Column("value", "Value")),
        [
            ("ok", chain.ok),
            ("events_checked", chain.events_checked),
            ("head_position", chain.head_position),
            ("head_hash", chain.head_hash),
            ("first_invalid_position", chain.first_invalid_position),
            ("reason", chain.reason),
        ],
    )
    head, check = report.head, report.head_check
    tree_rows: list[tuple[str, Any]] = [("tree_size", report.tree_size)]
    if head is not None and check is not None:
        tree_rows += [
            ("signed_head_tree_size", head.tree_size),
            ("signed_head_root", head.root),
            ("signed_head_timestamp", head.timestamp),
            ("signed_head_key_id", head.key_id),
            ("store_matches_signed_head", check.ok),
            ("head_events_checked", check.events_checked),
            ("head_first_invalid_position", check.first_invalid_position),
            ("head_reason", check.reason),
        ]
    tree_table = Table(
        "merkle-tree",
        "Merkle tree and the newest signed tree head",
        (Column("field", "Field"), Column("value", "Value")),
        tree_rows,
        note="" if head is not None else "No tree head has been signed yet (ledger audit sign).",
    )
    page = Page("Verify", [chain_table, tree_table])
    return render(request, "verify.html", page, signed, report=report)
