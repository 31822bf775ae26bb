"""What a console page shows, as data: named tables (rendered as HTML and served as CSV from the
same rows, so the CSV of a page is exactly what it shows) and a small line chart as SVG points."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class Column:
    key: str  # the CSV header (the API's field name where there is one)
    label: str  # the HTML header
    numeric: bool = False
    link: str | None = None  # a URL pattern, `{}` replaced by the (URL-quoted) cell value


@dataclass(frozen=True)
class Table:
    name: str  # `?csv=<name>` downloads it; the HTML element's id
    caption: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]
    empty: str = "None."
    note: str = ""


def facts(name: str, caption: str, rows: Iterable[tuple[str, Any]], note: str = "") -> Table:
    """A two-column table of named values (a record, a verification's outcome)."""
    return Table(name, caption, (Column("field", "Field"), Column("value", "Value")), list(rows), note=note)


@dataclass
class Page:
    title: str
    tables: list[Table] = field(default_factory=list)

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell_text(value: Any) -> str:
    """A cell as text: exact integers, RFC 3339 UTC times, yes/no, empty for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def to_csv(table: Table) -> str:
    """The table as CSV, header from the columns' keys. Text that a spreadsheet would take for a
    formula is prefixed with an apostrophe (numbers, negative ones too, are left as they are)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.key for c in table.columns])
    for row in table.rows:
        writer.writerow([_safe(v) for v in row])
    return out.getvalue()


def _safe(value: Any) -> str:
    text = cell_text(value)
    if isinstance(value, int) or not text.startswith(_FORMULA):
        return text
    return "'" + text


@dataclass(frozen=True)
class Series:
    label: str
    points: str  # SVG polyline points, "x,y x,y ..."
    low: int
    high: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    first: int  # the x axis: positions
    last: int
    series: list[Series]
    marker: float | None = None  # where a chosen position is, on the x axis


def line_chart(
    xs: Sequence[int],
    named: dict[str, Sequence[int]],
    mark: int | None = None,
    width: int = 640,
    height: int = 200,
) -> Chart:
    """Lines over a shared x axis, each scaled to its own range (their values differ by orders of
    magnitude); steps drawn as stairs, as a holding changes at an event and stays."""
    pad = 8
    first, last = (xs[0], xs[-1]) if xs else (0, 0)
    span = max(1, last - first)

    def x(value: int) -> float:
        return pad + (value - first) * (width - 2 * pad) / span

    series = []
    for label, ys in named.items():
        low, high = (min(ys), max(ys)) if ys else (0, 0)
        rise = max(1, high - low)

        def y(value: int, low: int = low, rise: int = rise) -> float:
            return height - pad - (value - low) * (height - 2 * pad) / rise

        coords: list[str] = []
        for i, (px, py) in enumerate(zip(xs, ys, strict=True)):
            if i:
                coords.append(f"{x(px):.1f},{y(ys[i - 1]):.1f}")
            coords.append(f"{x(px):.1f},{y(py):.1f}")
        series.append(Series(label, " ".join(coords), low, high))
    marker = round(x(mark), 1) if mark is not None and first <= mark <= last else None
    return Chart(width, height, first, last, series, marker)
