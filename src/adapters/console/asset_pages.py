"""The console's asset pages: the catalogue, and an asset with its cap table as of any position
or date, compliance, distributions, proposals, reconciliation and supply chart."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapters.api.common import Services, services
from adapters.console import queries
from adapters.console.pages import ASSET_ID, Signed, not_found, render
from adapters.console.tables import Column, Page, Table, line_chart
from projections.analytics import day_of
from projections.schema import snapshot

router = APIRouter(prefix="/console", include_in_schema=False)

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
                (
                    Column("kind", "Kind"),
                    Column("investor_id", "Investor", link="/console/investors/{}"),
                    Column("detail", "Detail"),
                ),
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
                Column("investor_id", "Investor", link="/console/investors/{}"),
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
