"""A view's own record of the dividend entitlements declared and not yet paid.

A payment event names only the investors paid; what each is paid, and of which asset, was
in the declaration. A view that shows payments keeps the unpaid entitlements in a table of
its own (each view one: `unpaid_table`), written from the events in the same batch as the
rest of its rows, so that it loads them back without reading another view's table.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, String, Table, select

from ledger.domain.distribution import Distribution
from projections.batch import Batch
from projections.schema import Exact, metadata

COLUMNS = ("distribution_id", "investor_id", "asset_id", "amount")
KEYS = ("distribution_id", "investor_id")


def unpaid_table(name: str) -> Table:
    """A view's table of unpaid entitlements: one row per distribution and investor."""
    return Table(
        name,
        metadata,
        Column("distribution_id", String(36), primary_key=True),
        Column("investor_id", String(64), primary_key=True),
        Column("asset_id", String(32), nullable=False),
        Column("amount", Exact, nullable=False),
    )


class UnpaidEntitlements:
    """The unpaid entitlements in memory (distribution -> asset, investor -> amount) and the
    rows a batch adds to or takes from the view's table. An entitlement declared and paid in
    one batch is never written."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.unpaid: dict[str, tuple[str, dict[str, int]]] = {}
        self._declared: dict[tuple[str, str], None] = {}  # in this batch, still unpaid
        self._paid: dict[tuple[str, str], None] = {}  # declared before this batch, paid in it

    def load(self, conn: Connection) -> None:
        u = self.table.c
        self.unpaid = {}
        for r in conn.execute(select(u.distribution_id, u.asset_id, u.investor_id, u.amount)):
            self.unpaid.setdefault(r[0], (r[1], {}))[1][r[2]] = r[3]
        self._declared.clear()
        self._paid.clear()

    def declare(self, event: Distribution.Declared) -> None:
        distribution_id = str(event.originator_id)
        self.unpaid[distribution_id] = (event.asset_id, dict(event.entitlements))
        for investor_id in event.entitlements:
            self._declared[(distribution_id, investor_id)] = None

    def pay(self, event: Distribution.EntitlementsPaid) -> tuple[str, list[tuple[str, int]]]:
        """Takes the paid entitlements off the record: their asset, and each investor paid
        with the amount, in the event's order."""
        distribution_id = str(event.originator_id)
        asset_id, unpaid = self.unpaid[distribution_id]
        paid = []
        for investor_id in event.investor_ids:
            paid.append((investor_id, unpaid.pop(investor_id)))
            key = (distribution_id, investor_id)
            if key in self._declared:
                del self._declared[key]
            else:
                self._paid[key] = None
        if not unpaid:
            del self.unpaid[distribution_id]
        return asset_id, paid

    def flush(self, batch: Batch) -> None:
        rows = []
        for distribution_id, investor_id in self._declared:
            asset_id, unpaid = self.unpaid[distribution_id]
            rows.append((distribution_id, investor_id, asset_id, unpaid[investor_id]))
        batch.insert_rows(self.table, COLUMNS, rows)
        batch.delete_rows(self.table, KEYS, self._paid)
        self._declared.clear()
        self._paid.clear()
