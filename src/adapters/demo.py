"""A realistic, deterministic demo: three assets, 320 investors in six countries, a year of activity."""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from adapters.chain import anchor
from adapters.chain.service import ChainService
from adapters.chain.trex import TokenCall
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.domain.chain import ANCHOR_MIRROR
from ledger.errors import LedgerError, NotFoundError
from ledger.transparency import new_signing_key, public_hex

COUNTRIES = ["ID"] * 8 + ["SG"] * 4 + ["MY"] * 3 + ["TH"] * 2 + ["VN"] * 2 + ["PH"]
ASSETS: list[dict[str, Any]] = [
    {
        "asset_id": "TOLL-JKT-01",
        "name": "Jakarta outer ring toll road (PPP)",
        "symbol": "TJK01",
        "decimals": 0,
        "currency": "IDR",
        "unit_price": 100_000,
        "authorized_supply": 5_000_000,
        "min_investment": 100_000,
        "max_investment": 1_000_000_000,
        "lockup_seconds": 0,
    },
    {
        "asset_id": "WATER-SBY-01",
        "name": "Surabaya water treatment plant",
        "symbol": "WSB01",
        "decimals": 2,
        "currency": "IDR",
        "unit_price": 250_000,
        "authorized_supply": 400_000_000,
        "min_investment": 100_000,
        "max_investment": 500_000_000,
        "max_holders": 250,
        "allowed_countries": ["ID", "MY", "PH", "SG", "TH"],
    },
    {
        "asset_id": "RENT-SG-01",
        "name": "Tampines rental apartments",
        "symbol": "RSG01",
        "decimals": 0,
        "currency": "SGD",
        "unit_price": 10_000,
        "authorized_supply": 200_000,
        "min_investment": 50_000,
        "max_investment": 20_000_000,
        "max_balance": 2_000,
        "accredited_only": True,
        "lockup_seconds": 86_400,
    },
]
INVESTORS = 320


class Stages:
    """The demo's progress on the console: a line per stage (a bar where the count is known),
    so that a long run (the chain demo takes minutes) always says what it is doing. On a console
    that is no terminal (a log file), each stage prints one line when it ends."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,  # a log gets the line each stage prints as it ends
        )

    def __enter__(self) -> Stages:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.stop()

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """A stage; the caller advances it by the number of steps done."""
        task = self.progress.add_task(description, total=total)
        started = time.monotonic()
        if not self.console.is_terminal:
            self.console.print(f"{description}: {total or 'some'} steps...")

        def advance(steps: int = 1) -> None:
            self.progress.advance(task, steps)

        yield advance
        done = int(self.progress.tasks[task].completed)
        self.progress.update(task, total=max(done, 1), completed=max(done, 1))
        if not self.console.is_terminal:
            self.console.print(f"{description}: done ({done}) in {time.monotonic() - started:.1f} s")


def load_demo(
    ledger: LedgerApplication, console: Console, chain: ChainService | None = None
) -> dict[str, Any]:
    """Loads the scenario once (a second run leaves the store as it is) and returns a summary.

    With a chain, each asset's T-REX token is deployed right after approval, so that
    the whole scenario reaches the chain through the outbox.
    """
    rng = random.Random(20261121)  # noqa: S311 (a reproducible scenario, not security)
    outcomes: Counter[str] = Counter()
    fresh = False
    try:
        ledger.get_asset(ASSETS[0]["asset_id"])
        console.print("demo already loaded; showing the store as it is")
    except NotFoundError:
        with Stages(console) as stages:
            _load(ledger, rng, outcomes, chain, stages)
        fresh = True
    verification = ledger.admin.verify()
    return {
        "assets": [a["asset_id"] for a in ASSETS],
        "fresh": fresh,
        "investors": INVESTORS,
        "commands_accepted": outcomes["ok"],
        "commands_rejected": sum(n for code, n in outcomes.items() if code != "ok"),
        "rejections_by_code": dict(sorted((c, n) for c, n in outcomes.items() if c != "ok")),
        "events": verification.events_checked,
        "head_position": verification.head_position,
        "head_hash": verification.head_hash,
        "hash_chain_ok": verification.ok,
    }


def _attempt(outcomes: Counter[str], action: Any, *args: Any) -> Any:
    """Runs a command as a platform would: rejections are counted, not fatal."""
    try:
        result = action(*args)
    except LedgerError as error:
        outcomes[error.code] += 1
        return None
    outcomes["ok"] += 1
    return result


def _load(
    ledger: LedgerApplication,
    rng: random.Random,
    outcomes: Counter[str],
    chain: ChainService | None,
    stages: Stages,
) -> None:
    label = "assets: register, approve" + (", deploy a T-REX suite on chain" if chain else "")
    with stages.stage(label, len(ASSETS)) as advance:
        for terms in ASSETS:
            _attempt(outcomes, ledger.register_asset, terms)
            _attempt(outcomes, ledger.approve_asset, terms["asset_id"])
            if chain is not None:
                chain.deploy(terms["asset_id"])
            _attempt(outcomes, ledger.set_offering, terms["asset_id"], True)
            advance(1)

    investors = [f"inv-{n:04d}" for n in range(1, INVESTORS + 1)]
    with stages.stage("investors: register, KYC", len(investors)) as advance:
        for n, investor_id in enumerate(investors, start=1):
            wallet = "0x" + rng.getrandbits(160).to_bytes(20, "big").hex()
            country, accredited = rng.choice(COUNTRIES), n % 9 == 0
            _attempt(outcomes, ledger.register_investor, investor_id, country, wallet, accredited)
            roll = rng.random()
            status = "approved" if roll < 0.9 else "pending" if roll < 0.95 else "rejected"
            if status != "pending":
                _attempt(outcomes, ledger.update_kyc, investor_id, status)
            advance(1)

    with stages.stage("investments: place, pay or cancel", len(investors)) as advance:
        _invest(ledger, rng, outcomes, investors, advance)
    with stages.stage("transfers, a freeze, a distribution, valuations", 150) as advance:
        _trade(ledger, rng, outcomes, investors, advance)
    with stages.stage("a proposal and its votes") as advance:
        _vote(ledger, rng, outcomes, advance)


def _invest(
    ledger: LedgerApplication,
    rng: random.Random,
    outcomes: Counter[str],
    investors: list[str],
    advance: Callable[[int], None],
) -> None:
    for investor_id in investors:
        advance(1)
        for terms in rng.sample(ASSETS, k=rng.choice([1, 1, 2, 3])):
            amount = rng.randrange(terms["min_investment"], terms["min_investment"] * 40)
            placed = _attempt(outcomes, ledger.place_investment, investor_id, terms["asset_id"], amount)
            if placed is None:
                continue
            investment_id = placed.result["investment_id"]
            roll = rng.random()
            if roll < 0.9:
                _attempt(outcomes, ledger.confirm_payment, investment_id, f"PAY-{investment_id[:8]}")
            elif roll < 0.95:
                _attempt(outcomes, ledger.cancel_investment, investment_id)


def _trade(
    ledger: LedgerApplication,
    rng: random.Random,
    outcomes: Counter[str],
    investors: list[str],
    advance: Callable[[int], None],
) -> None:
    _revalue(ledger, outcomes, 92, "appraisal Q3 (KJPP)", "market comparables")  # down
    for _ in range(150):
        advance(1)
        terms = rng.choice(ASSETS)
        holders = sorted(ledger.get_asset(terms["asset_id"]).balances.items())
        sender, balance = rng.choice(holders)
        receiver = rng.choice(investors)
        _attempt(
            outcomes,
            ledger.transfer,
            terms["asset_id"],
            sender,
            receiver,
            rng.randint(1, max(1, balance // 3)),
        )

    toll = ledger.get_asset("TOLL-JKT-01")
    ranked = sorted(toll.balances, key=lambda i: (-toll.balances[i], i))
    _attempt(outcomes, ledger.freeze_tokens, "TOLL-JKT-01", ranked[0], toll.balances[ranked[0]] // 2)
    _attempt(outcomes, ledger.freeze_investor, "TOLL-JKT-01", ranked[1])

    declared = _attempt(outcomes, ledger.declare_distribution, "TOLL-JKT-01", 125_000_000)
    if declared is not None:
        _attempt(outcomes, ledger.pay_distribution, declared.result["distribution_id"])

    _revalue(ledger, outcomes, 115, "NAV report Q4 (independent valuer)", "discounted cash flow")  # up


def _vote(
    ledger: LedgerApplication, rng: random.Random, outcomes: Counter[str], advance: Callable[[int], None]
) -> None:
    water = ledger.get_asset("WATER-SBY-01")
    proposal = _attempt(
        outcomes,
        ledger.create_proposal,
        "WATER-SBY-01",
        "Expand capacity by 20% in 2027",
        ["approve", "reject", "abstain"],
        3_000,
    )
    if proposal is not None:
        proposal_id = proposal.result["proposal_id"]
        for investor_id in sorted(water.balances):
            if rng.random() < 0.6:
                option = rng.choices(["approve", "reject", "abstain"], weights=[6, 3, 1])[0]
                _attempt(outcomes, ledger.cast_vote, proposal_id, investor_id, option)
                advance(1)
        _attempt(outcomes, ledger.close_proposal, proposal_id)


def _revalue(
    ledger: LedgerApplication, outcomes: Counter[str], percent: int, source: str, method: str
) -> None:
    """A valuation of every asset at `percent` of its unit price, dated now."""
    for terms in ASSETS:
        price = terms["unit_price"] * percent // 100
        _attempt(
            outcomes,
            ledger.record_valuation,
            terms["asset_id"],
            price,
            ledger.clock(),
            source,
            method,
        )


def run_chain_demo(chain: ChainService, console: Console) -> list[dict[str, Any]]:
    """Carries the demo out on the chain, reconciles every asset (clean), then moves tokens
    directly on chain, outside the ledger, and reconciles again: the difference shows."""
    with Stages(console) as stages:
        reports = _reconciled_demo(chain, stages)
    return reports


def _reconciled_demo(chain: ChainService, stages: Stages) -> list[dict[str, Any]]:
    assert chain.worker is not None
    pending = len(chain.app.outbox.open_rows(1_000_000))
    with stages.stage("chain: identities, mints, transfers (the outbox)", pending) as advance:
        while done := chain.worker.run_once(limit=10):  # ten at a time: the bar moves
            advance(done)
    chain.rpc.call("anvil_mine", [hex(chain.confirmations + 1)])
    reports = []
    bound = chain.bound_assets()
    with stages.stage("chain: mirror and reconcile each asset", len(bound)) as advance:
        for asset_id in bound:
            reports.append(chain.reconcile(asset_id)[1] | {"when": "after the demo"})
            advance(1)
    with stages.stage("chain: a transfer outside the ledger, reconciled again", 1) as advance:
        toll = chain.app.get_asset("TOLL-JKT-01")
        ranked = sorted(toll.balances, key=lambda i: (-toll.balances[i], i))
        source, target = (chain.app.get_investor(i).wallets[0] for i in (ranked[2], ranked[3]))
        assert chain.client is not None and chain.worker is not None
        suite = chain.worker.suite("TOLL-JKT-01")
        call = TokenCall("forced_transfer", {"from_": source, "to": target, "amount": 1})
        chain.client.agent_call(suite, call)
        chain.rpc.call("anvil_mine", [hex(chain.confirmations + 1)])
        after = chain.reconcile("TOLL-JKT-01")[1]
        reports.append(after | {"when": "after one transfer on chain, outside the ledger"})
        advance(1)
    return reports


TRUNCATED = 5  # events of the anchored head the demo's scratch copy loses


def run_anchor_demo(chain: ChainService, console: Console) -> dict[str, Any]:
    """Verifiable history on the chain: a signing key (a temporary file), a signed tree head,
    the anchor contract deployed and the head anchored, the anchor mirrored, `verify --anchored`
    passing; then a scratch copy of the store that lost its last events, among them the last
    `TRUNCATED` the anchored head covers (its hash chain still verifies), checked against the
    same anchor: caught, naming the first missing position.
    The demo store itself is left whole (`make run` serves it afterwards)."""
    assert chain.client is not None
    label = "chain: sign a tree head, anchor it, verify against the anchor"
    with (
        tempfile.TemporaryDirectory(prefix="ledger-demo-") as scratch,
        Stages(console) as stages,
        stages.stage(label, 1) as advance,
    ):
        key = new_signing_key(Path(scratch) / "audit-key.pem")
        public = key.public_key()
        head = chain.app.transparency.sign_head(key, datetime.now(tz=UTC))
        address, block = anchor.deploy(chain.client)
        chain.anchor_address, chain.anchor_from_block = address, block
        published = anchor.AnchorPublisher(
            chain.client, chain.rpc, address, chain.app.transparency, public, block
        ).publish_latest()
        assert published is not None
        chain.rpc.call("anvil_mine", [hex(chain.confirmations + 1)])
        mirrored = next(r for r in chain.sync() if r.asset_id == ANCHOR_MIRROR)
        found, result = anchor.verify_anchored(
            chain.app.admin, chain.rpc, address, public, block, chain.confirmations
        )
        assert found is not None
        copy_path = Path(scratch) / "truncated.sqlite3"
        keep = found.head.tree_size - TRUNCATED
        truncated, kept, total = _truncated_copy(chain.app, copy_path, keep)
        _, caught = anchor.verify_anchored(
            truncated.admin, chain.rpc, address, public, block, chain.confirmations
        )
        copy_chain = truncated.admin.verify()
        truncated.close()
        advance(1)
    return {
        "public_key": public_hex(public),
        "key_id": head.key_id,
        "anchor_address": address,
        "anchor_topic": anchor.TOPIC,
        "anchored_tree_size": found.head.tree_size,
        "anchored_root": found.head.root,
        "anchor_block": found.block_number,
        "anchor_tx": found.tx_hash,
        "mirrored_anchor_logs": mirrored.logs,
        "verify_anchored": result.as_dict(),
        "truncated_copy": {
            "events_kept": kept,
            "events_removed": total - kept,
            "hash_chain_ok": copy_chain.ok,
            "verify_anchored": caught.as_dict(),
        },
    }


def _truncated_copy(app: LedgerApplication, path: Path, keep: int) -> tuple[LedgerApplication, int, int]:
    """A SQLite copy of the store's first `keep` events only (an export, cut, imported), and
    how many events the store has."""
    exported = path.with_suffix(".jsonl")
    with exported.open("w", encoding="utf-8") as handle:
        app.admin.export(handle)
    lines = exported.read_text(encoding="utf-8").splitlines(keepends=True)
    copy = LedgerApplication(store_env(f"sqlite:///{path}"))
    copy.admin.import_(lines[:keep], lines[:keep])
    return copy, keep, len(lines)
