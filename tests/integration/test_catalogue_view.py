"""The asset catalogue as a view of its own; the holdings, statements and analytics views each on
its own tables; migrations 0008 and 0009 (which parted them) from read databases the previous
versions built; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, inspect, select

import projections.runner
from ledger.application import LedgerApplication
from projections.analytics import AnalyticsView
from projections.assets import assets, assets_page
from projections.holdings import HoldingsView
from projections.migrate import alembic_config, upgrade
from projections.replay import replay
from projections.runner import ProjectionRunner
from projections.schema import Exact, build_copy, engine_for, metadata
from projections.statements import StatementsView
from tests.conftest import FakeClock
from tests.support import ASSET_TERMS, holding, onboard, open_asset

ASSET = str(ASSET_TERMS["asset_id"])
DRAFT = "DRAFT-02"
HOLDINGS_TABLES = (
    "rm_asset_totals",
    "rm_holdings",
    "rm_holding_changes",
    "rm_captable_snapshots",
    "rm_pending_investments",
)
STATEMENTS_TABLES = ("rm_statements", "rm_statement_assets", "rm_statement_entitlements")
ANALYTICS_TABLES = (
    "rm_valuations",
    "rm_investor_flows",
    "rm_analytics_days",
    "rm_analytics_assets",
    "rm_analytics_entitlements",
)
NEW_IN_0008 = ("rm_asset_totals", "rm_pending_investments")
NEW_IN_0009 = (
    "rm_statement_assets",
    "rm_statement_entitlements",
    "rm_analytics_assets",
    "rm_analytics_entitlements",
)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    read = engine_for(store_url)
    yield read
    read.dispose()


def contents(engine: Engine, tables: dict[str, Table] | None = None) -> dict[str, list[tuple[str, ...]]]:
    """Every row of `tables` (by default the read models'), as text, in order."""
    with engine.connect() as conn:
        return {
            name: sorted(tuple(str(v) for v in row) for row in conn.execute(select(table)))
            for name, table in (tables or metadata.tables).items()
        }


def catalogue(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return assets_page(conn, None, None, 100)[0]


def history(app: LedgerApplication, facts: dict[str, str]) -> list[Callable[[], object]]:
    """Commands of every kind the catalogue and the holdings show, to run one at a time; the
    investment bob places stays pending (its id in `facts`)."""

    def place() -> None:
        facts["pending"] = str(app.place_investment("bob", ASSET, 500_000).result["investment_id"])

    return [
        lambda: open_asset(app),
        lambda: app.register_asset({**ASSET_TERMS, "asset_id": DRAFT, "symbol": "DRF"}),
        lambda: onboard(app, "alice"),
        lambda: onboard(app, "bob", "SG"),
        lambda: holding(app, ASSET, "alice", 30),
        place,
        lambda: app.pause_asset(ASSET),
        lambda: app.unpause_asset(ASSET),
        lambda: app.bind_token(ASSET, 31337, "0x" + "ab" * 20, "0x" + "cd" * 20),
        lambda: app.transfer(ASSET, "alice", "bob", 10),
        lambda: app.set_offering(ASSET, False),
        lambda: app.approve_asset(DRAFT),
    ]


def value(app: LedgerApplication, clock: FakeClock, price: int) -> None:
    """Values the asset now, the clock moved up to its registration if need be (event times
    are the machine's, the commands' clock the test's)."""
    clock.now = max(clock.now, app.get_asset(ASSET).created_on)
    app.record_valuation(ASSET, price, clock.now.isoformat(), "appraisal")


def dividends(app: LedgerApplication, clock: FakeClock, facts: dict[str, str]) -> list[Callable[[], object]]:
    """After `history`: a valuation, frozen tokens, and two distributions to alice and bob, the
    first paid one investor at a time, the second left unpaid (their ids in `facts`)."""

    def declare(name: str, amount: int) -> None:
        facts[name] = str(app.declare_distribution(ASSET, amount).result["distribution_id"])

    return [
        lambda: value(app, clock, 2_000),
        lambda: app.freeze_tokens(ASSET, "alice", 5),
        lambda: declare("paid", 1_000),
        lambda: app.pay_distribution(facts["paid"], "bob"),
        lambda: app.transfer(ASSET, "bob", "alice", 3),
        lambda: app.unfreeze_tokens(ASSET, "alice", 2),
        lambda: app.redeem(ASSET, "alice", 4),
        lambda: app.freeze_investor(ASSET, "bob"),
        lambda: app.pay_distribution(facts["paid"], "alice"),
        lambda: declare("unpaid", 700),
    ]


def test_the_catalogue_projected_as_events_come_equals_its_replay(
    app: LedgerApplication, engine: Engine
) -> None:
    upgrade(engine)
    for step in history(app, {}):
        step()
        ProjectionRunner(app, engine, batch_size=1, transaction_events=1).catch_up()
    projected = catalogue(engine)
    rows = contents(engine, {"rm_assets": assets})
    assert [(a["asset_id"], a["status"], a["total_supply"], a["holder_count"]) for a in projected] == [
        (DRAFT, "approved", 0, 0),
        (ASSET, "tokenized", 30, 2),
    ]
    assert (projected[1]["paused"], projected[1]["offering_open"]) == (False, False)
    token = projected[1]["token"]
    assert (token["chain_id"], token["token_address"].lower(), token["identity_registry"].lower()) == (
        31337,
        "0x" + "ab" * 20,
        "0x" + "cd" * 20,
    )
    assert replay(app, engine) == app.admin.head_position()
    assert (catalogue(engine), contents(engine, {"rm_assets": assets})) == (projected, rows)


def project_alone(
    app: LedgerApplication,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    view: Any,
    tables: tuple[str, ...],
    steps: list[Callable[[], Any]],
) -> tuple[dict[str, list[Any]], set[str]]:
    """Runs `steps`, projecting `view` alone after each on copies of its own `tables` (by a
    runner made anew each time, so it loads its state from them), then every view on the real
    tables. Returns the copies' contents and the tables its SQL named; asserts it named no
    table but its own copies and that the copies equal what it wrote beside the other views."""
    upgrade(engine)
    everything = ProjectionRunner(app, engine)
    own = {n: t for n, t in build_copy("own_").items() if n in (*tables, "rm_tracking")}
    with engine.begin() as conn:
        for table in own.values():
            table.create(conn)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    monkeypatch.setattr(projections.runner, "VIEWS", (view,))
    event.listen(engine, "before_cursor_execute", record)
    try:
        for step in steps:
            step()
            ProjectionRunner(app, engine, own).catch_up()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    named = {name for statement in statements for name in re.findall(r"\w*rm_\w+", statement)}
    assert named <= {f"own_{name}" for name in own}
    everything.catch_up()
    alone = contents(engine, {name: own[name] for name in tables})
    assert alone == contents(engine, {name: metadata.tables[name] for name in tables})
    return alone, named


def test_the_holdings_view_reads_and_writes_only_its_own_tables(
    app: LedgerApplication, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Projected alone, on copies of its own tables only, by a runner made anew for each command
    (so it loads its state, the pending investment included, from its tables each time), the
    holdings view writes what it writes beside the other views."""
    facts: dict[str, str] = {}
    steps = [*history(app, facts), lambda: app.confirm_payment(facts["pending"], "pay-late")]
    alone, named = project_alone(app, engine, monkeypatch, HoldingsView, HOLDINGS_TABLES, steps)
    assert "own_rm_pending_investments" in named
    assert alone["rm_pending_investments"] == []


@pytest.mark.parametrize(
    ("view", "tables"),
    [(StatementsView, STATEMENTS_TABLES), (AnalyticsView, ANALYTICS_TABLES)],
    ids=["statements", "analytics"],
)
def test_the_statements_and_analytics_views_read_and_write_only_their_own_tables(
    app: LedgerApplication,
    engine: Engine,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    view: Callable[[dict[str, Table]], Any],
    tables: tuple[str, ...],
) -> None:
    """Projected alone, on copies of its own tables only, by a runner made anew for each command
    (so it loads its state, the assets and the unpaid entitlements included, from its tables
    each time), the view writes what it writes beside the other views, where one batch declares
    and pays."""
    facts: dict[str, str] = {}
    steps = [*history(app, facts), *dividends(app, clock, facts)]
    alone, named = project_alone(app, engine, monkeypatch, view, tables, steps)
    assert {f"own_{name}" for name in tables} <= named
    (assets_table,) = (name for name in tables if name.endswith("_assets"))
    (unpaid,) = (name for name in tables if name.endswith("_entitlements"))
    assert len(alone[assets_table]) == 2
    assert len(alone[unpaid]) == 2  # the second distribution's, to alice and bob
    kinds = {row[4] for row in alone[tables[0] if view is StatementsView else "rm_investor_flows"]}
    assert kinds >= (
        {"dividend_payment", "tokens_unfrozen", "redemption", "address_frozen", "transfer_in"}
        if view is StatementsView
        else {"dividend", "entitled", "freeze", "redeem", "transfer_in"}
    )


def test_a_read_database_of_the_previous_version_upgrades_and_goes_on_as_a_replay(
    app: LedgerApplication, engine: Engine, store_url: str
) -> None:
    """Read models as the previous version (migration 0007) left them: the catalogue holding the
    holdings' totals, no `assets` view, the pending investments only in the investors view.
    Upgraded, they are what a replay builds, and they go on from there: the investment placed
    before the upgrade is paid after it."""
    facts: dict[str, str] = {}
    for step in history(app, facts):
        step()
    at_revision(engine, "0007")
    build_as_previous_version(app, engine)
    upgrade(engine)
    schema = inspect(engine)
    for name, table in metadata.tables.items():
        assert {c["name"] for c in schema.get_columns(name)} == set(table.c.keys()), name
    runner = ProjectionRunner(app, engine)
    assert runner.catch_up() == 0  # every view, `assets` too, at the head already
    upgraded = contents(engine)
    assert upgraded["rm_pending_investments"] != []
    assert replay(app, engine) == app.admin.head_position()
    assert contents(engine) == upgraded

    for step in history_after_upgrade(app, facts["pending"]):
        step()
    upgrade(engine)  # a no-op at the head
    runner = ProjectionRunner(app, engine)
    runner.catch_up()
    projected = contents(engine)
    replay(app, engine)
    assert contents(engine) == projected
    assert [(a["asset_id"], a["total_supply"], a["holder_count"]) for a in catalogue(engine)] == [
        (DRAFT, 0, 0),
        (ASSET, 30, 2),
    ]


def history_after_upgrade(app: LedgerApplication, pending: str) -> list[Callable[[], object]]:
    return [
        lambda: app.confirm_payment(pending, "pay-after-upgrade"),
        lambda: app.redeem(ASSET, "bob", 5),
        lambda: app.pause_asset(ASSET),
    ]


def previous_catalogue() -> Table:
    """`rm_assets` as migration 0007 left it: the catalogue's columns and the holdings' totals."""
    own = [Column(c.name, c.type, primary_key=c.primary_key) for c in assets.c]
    totals = [
        Column("total_supply", Exact, nullable=False),
        Column("holder_count", Integer, nullable=False),
        Column("changes_since_checkpoint", Integer, nullable=False),
    ]
    return Table("rm_assets", MetaData(), *own, *totals)


def build_as_previous_version(app: LedgerApplication, engine: Engine) -> None:
    """Fills the read models at migration 0007 with what the previous version wrote there: the
    rows of every view it had (projected here into scratch copies), its catalogue rows holding
    the holdings' totals, and no tracking row for `assets`."""
    scratch = build_copy("prev_")
    with engine.begin() as conn:
        for table in scratch.values():
            table.create(conn)
    ProjectionRunner(app, engine, scratch).catch_up()
    own, totals = scratch["rm_assets"], scratch["rm_asset_totals"]
    with engine.begin() as conn:
        catalogue_rows = conn.execute(
            select(own, totals.c.total_supply, totals.c.holder_count, totals.c.changes_since_checkpoint)
            .join_from(own, totals, totals.c.asset_id == own.c.asset_id)
        ).all()
        insert(conn, previous_catalogue(), catalogue_rows)
        for name, table in metadata.tables.items():
            if name not in ("rm_assets", "rm_tracking", *NEW_IN_0008, *NEW_IN_0009):
                insert(conn, table, conn.execute(select(scratch[name])).all())
        tracked = conn.execute(select(scratch["rm_tracking"])).all()
        insert(conn, metadata.tables["rm_tracking"], [r for r in tracked if r.view != "assets"])
        for table in scratch.values():
            table.drop(conn)


def insert(conn: Any, table: Table, rows: Iterable[Any]) -> None:
    values = [dict(row._mapping) for row in rows]
    if values:
        conn.execute(table.insert(), values)



def test_a_read_database_of_version_0008_upgrades_and_goes_on_as_a_replay(
    app: LedgerApplication, engine: Engine, clock: FakeClock
) -> None:
    """Read models as migration 0008 left them: the statements and analytics views with no
    tables of their own for the assets and the unpaid entitlements (they read the catalogue's
    and the distributions view's). Upgraded, they are what a replay builds, and they go on from
    there: a distribution declared before the upgrade is paid after it, and one declared after."""
    facts: dict[str, str] = {}
    for step in [*history(app, facts), *dividends(app, clock, facts)]:
        step()
    at_revision(engine, "0008")
    build_as_version_0008(app, engine)
    upgrade(engine)
    schema = inspect(engine)
    for name, table in metadata.tables.items():
        assert {c["name"] for c in schema.get_columns(name)} == set(table.c.keys()), name
    assert ProjectionRunner(app, engine).catch_up() == 0  # every view at the head already
    upgraded = contents(engine)
    for name in NEW_IN_0009:
        assert upgraded[name] != [], name
    assert replay(app, engine) == app.admin.head_position()
    assert contents(engine) == upgraded

    for step in [
        lambda: app.pay_distribution(facts["unpaid"], "alice"),
        lambda: value(app, clock, 2_500),
        lambda: app.redeem(ASSET, "alice", 2),
        lambda: app.declare_distribution(ASSET, 300),
        lambda: app.pay_distribution(facts["unpaid"], "bob"),
    ]:
        step()
        ProjectionRunner(app, engine).catch_up()  # anew: each loads its state from the tables
    projected = contents(engine)
    assert [len(projected[name]) for name in ("rm_statement_entitlements", "rm_analytics_entitlements")] == [
        2,
        2,
    ]
    replay(app, engine)
    assert contents(engine) == projected


def at_revision(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def build_as_version_0008(app: LedgerApplication, engine: Engine) -> None:
    """Fills the read models at migration 0008 with what that version wrote: the rows of every
    table it had (projected here into scratch copies), and every view's tracking row."""
    scratch = build_copy("prev_")
    with engine.begin() as conn:
        for table in scratch.values():
            table.create(conn)
    ProjectionRunner(app, engine, scratch).catch_up()
    with engine.begin() as conn:
        for name, table in metadata.tables.items():
            if name not in NEW_IN_0009:
                insert(conn, table, conn.execute(select(scratch[name])).all())
        for table in scratch.values():
            table.drop(conn)
