"""The console's tables as CSV and its chart, without I/O."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from adapters.console.tables import Column, Table, cell_text, line_chart, to_csv

pytestmark = pytest.mark.unit


def test_csv_keeps_numbers_exact_and_defuses_formulas() -> None:
    table = Table(
        "t",
        "T",
        (Column("name", "Name"), Column("amount", "Amount", numeric=True), Column("paid", "Paid")),
        [("=HYPERLINK(1)", -5000, True), ("+1", 10**30, False), ("plain, with comma", 0, None)],
    )
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows == [
        ["name", "amount", "paid"],
        ["'=HYPERLINK(1)", "-5000", "yes"],
        ["'+1", str(10**30), "no"],
        ["plain, with comma", "0", ""],
    ]


def test_cells_read_as_the_api_writes_them() -> None:
    assert cell_text(datetime(2026, 12, 3, 10, 0, tzinfo=UTC)) == "2026-12-03T10:00:00Z"
    assert cell_text(date(2026, 12, 3)) == "2026-12-03"
    assert cell_text(None) == ""
    assert cell_text(123456789012345678901234567890) == "123456789012345678901234567890"


def test_the_chart_draws_stairs_on_each_lines_own_scale_and_marks_a_position() -> None:
    lines = {"supply": [0, 100, 50], "holders": [1, 1, 2]}
    chart = line_chart([10, 20, 30], lines, mark=20, width=108, height=108)
    supply, holders = chart.series
    assert (supply.low, supply.high, holders.low, holders.high) == (0, 100, 1, 2)
    # x from 8 to 100, y from 100 (low) to 8 (high); each step holds its value until the next
    assert supply.points == "8.0,100.0 54.0,100.0 54.0,8.0 100.0,8.0 100.0,54.0"
    assert chart.marker == 54.0
    assert line_chart([10, 20], {"a": [1, 2]}, mark=99).marker is None
