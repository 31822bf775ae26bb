"""What the lists share: the response models of their pages, opaque keyset cursors, CSV exports.

A page is `{"items": [...], "next_cursor": str | null, "as_of_position": int}`. The cursor is the
key of the last item of a page, named by its list, so a page never skips or repeats a row however
many rows are added meanwhile (keyset pagination, no OFFSET). Quantities and money are `Quantity`:
an integer that is written as a JSON string of digits.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from adapters.api.common import ApiError
from adapters.api.responses import Quantity, Token

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (1 to 500).")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")]
PositionBound = Annotated[int | None, Query(ge=0, le=2**62)]
DEFAULT_LIMIT = 100
CSV = "text/csv"
# Documents the CSV form of an operation beside its JSON (`responses=` of the route).
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {CSV: {"schema": {"type": "string"}}},
        "description": "JSON, or CSV with Accept: text/csv",
    }
}

Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None
    as_of_position: int


class AssetItem(BaseModel):
    asset_id: str
    name: str
    symbol: str
    decimals: int
    currency: str
    unit_price: Quantity
    authorized_supply: Quantity
    min_investment: Quantity
    max_investment: Quantity
    max_holders: int | None
    max_balance: Quantity | None
    allowed_countries: list[str]
    accredited_only: bool
    lockup_seconds: int
    status: str
    offering_open: bool
    paused: bool
    token: Token | None
    total_supply: Quantity
    holder_count: int
    registered_position: int


class InvestorItem(BaseModel):
    investor_id: str
    country: str
    accredited: bool
    kyc_status: str
    kyc_expires_at: datetime | None
    registered_at: datetime
    registered_position: int


class MovementItem(BaseModel):
    """One line of a statement: what moved the investor's holding of the asset, and the holding
    right after it. `quantity` is the tokens concerned (moved, issued, burnt, frozen or unfrozen;
    0 for an address freeze and for dividends); `amount` the money of a dividend, else null."""

    position: int
    occurred_at: datetime
    asset_id: str
    investor_id: str
    kind: str
    counterparty: str | None
    reference: str | None
    quantity: Quantity
    amount: Quantity | None
    balance_after: Quantity
    frozen_after: Quantity


class DistributionItem(BaseModel):
    distribution_id: str
    asset_id: str
    amount: Quantity
    record_position: int
    declared_position: int


class ProposalItem(BaseModel):
    proposal_id: str
    asset_id: str
    title: str
    options: list[str]
    quorum_bps: int
    closes_at: datetime | None
    status: str
    snapshot_position: int
    supply_at_snapshot: Quantity
    quorum_reached: bool | None
    result: str | None


class InvestmentItem(BaseModel):
    investment_id: str
    investor_id: str
    asset_id: str
    amount: Quantity
    quantity: Quantity
    accepted_amount: Quantity
    refund_amount: Quantity
    status: str
    payment_ref: str | None
    placed_at: datetime
    placed_position: int
    updated_position: int


AssetPage = Page[AssetItem]
InvestorPage = Page[InvestorItem]
StatementPage = Page[MovementItem]
DistributionPage = Page[DistributionItem]
ProposalPage = Page[ProposalItem]
InvestmentPage = Page[InvestmentItem]


def page_response(page: BaseModel) -> Response:
    """The page as JSON, serialised by its model (quantities as strings of digits)."""
    return Response(page.model_dump_json(), media_type="application/json")


# ----- cursors -----


def encode_cursor(kind: str, *key: int | str) -> str:
    """An opaque cursor: the list's name and the key of the last item of a page."""
    text = json.dumps([kind, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str, *shape: type) -> tuple[Any, ...] | None:
    """The key in a cursor `encode_cursor(kind, ...)` made, of the types `shape`; None for no
    cursor; 422 `validation_error` for anything else."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)
    except ValueError:  # bad base64, bad UTF-8 and bad JSON alike
        decoded = None
    if (
        isinstance(decoded, list)
        and len(decoded) == len(shape) + 1
        and decoded[0] == kind
        and all(type(value) is t for value, t in zip(decoded[1:], shape, strict=True))
        and all(0 <= value < 2**63 for value in decoded[1:] if isinstance(value, int))
    ):
        return tuple(decoded[1:])
    raise ApiError(422, "validation_error", "cursor is not one this list gave")


# ----- CSV -----


def wants_csv(request: Request) -> bool:
    """Whether the caller asked for CSV (`Accept: text/csv`, with any parameters)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == CSV for part in accept.split(","))


def _cell(value: Any) -> str:
    """A CSV cell: numbers as digits, times in RFC 3339, text that a spreadsheet would run as a
    formula (= + - @, tab, carriage return first) quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    text = str(value)
    if text and not isinstance(value, int) and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def csv_lines(header: Sequence[str], chunks: Iterable[Iterable[Sequence[Any]]]) -> Iterator[str]:
    """The header row, then each chunk of rows as one piece of text (RFC 4180 quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for rows in chunks:
        writer.writerows([_cell(v) for v in row] for row in rows)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def csv_response(name: str, as_of: int, lines: Iterator[str]) -> StreamingResponse:
    """A streamed CSV file; its position is in `X-As-Of-Position` and in its file name."""
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "X-As-Of-Position": str(as_of),
            "Content-Disposition": f'attachment; filename="{name}-at-{as_of}.csv"',
        },
    )
