"""The console's investor pages: the list, and an investor with registration, KYC, wallets,
portfolio, eligibility and statement."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.api.common import services
from adapters.console import queries
from adapters.console.pages import INVESTOR_ID, Signed, not_found, render
from adapters.console.tables import Column, Page, Table, facts
from projections.schema import snapshot

router = APIRouter(prefix="/console", include_in_schema=False)
INVESTORS_PER_PAGE = 100


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
    registration = facts(
        "registration",
        "Registration and KYC",
        [(k, v) for k, v in dataclasses.asdict(record).items() if k not in ("wallets", "lost_wallets")],
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
            Column("occurred_at", "Time"),
            Column("asset_id", "Asset", link="/console/assets/{}"),
            Column("kind", "Movement"),
            Column("counterparty", "Counterparty", link="/console/investors/{}"),
            Column("quantity", "Tokens", numeric=True),
            Column("balance_after", "Balance after", numeric=True),
            Column("frozen_after", "Frozen after", numeric=True),
            Column("amount", "Cash", numeric=True),
            Column("reference", "Reference"),
        ),
        [
            (
                m.position, m.occurred_at, m.asset_id, m.kind, m.counterparty, m.quantity,
                m.balance_after, m.frozen_after, m.amount, m.reference,
            )
            for m in movements
        ],
        empty="No movements.",
    )
    page = Page(investor_id, [registration, wallets, portfolio, eligibility, statement])
    return render(request, "tables.html", page, signed, position=position, heading=f"Investor {investor_id}")
