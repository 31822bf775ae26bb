"""Stateful property test: random command sequences against a plain reference model.

A hypothesis `RuleBasedStateMachine` drives one `LedgerApplication` (one asset, a
few investors) through investments, payments, cancellations, transfers, forced
transfers, redemptions, freezes, pauses, KYC changes, lock-up clock moves,
distributions and votes. A reference model made of plain dicts decides on its
own, following the rule order of SPEC 4.3, whether each command succeeds and
with which error code. After every step the asset must equal the model and the
invariants of SPEC 4.3 must hold; at the end, replaying the stored events in a
fresh application must rebuild the very same aggregates and the hash chain must
verify.
"""

from __future__ import annotations

import bisect
import math
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from functools import partial
from typing import Any, ClassVar
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.application import LedgerApplication
from ledger.commit import Outcome
from ledger.config import store_env
from ledger.domain.asset import Asset
from ledger.domain.investor import Investor, WalletClaim
from ledger.errors import LedgerError
from tests.conftest import PG_URL, FakeClock, require_postgres
from tests.support import wallet_for

ASSET = "TOLL-PBT-01"
INVESTORS = ("alice", "bob", "carol", "dave", "erin")
GHOST = "ghost"  # never registered: every command naming it is `not_found`
COUNTRIES = ("ID", "SG", "ID", "US")
KYC_STATUSES = ("pending", "approved", "rejected", "revoked")

# Investors by name: one of the registered ones most of the time, the ghost rarely.
investor_ids = st.sampled_from((*INVESTORS, *INVESTORS, GHOST))
# An integer picks among the investors that matter for the command, so that few
# steps are wasted on investors the command cannot apply to: a holder (negative:
# a holder with frozen tokens), or an eligible investor (negative: an eligible
# investor holding nothing yet).
Pick = int | str
holders = st.one_of(st.integers(0, 999), st.integers(-999, -1), investor_ids)
buyers = st.one_of(st.integers(0, 999), investor_ids)
receivers = st.one_of(st.integers(0, 999), st.integers(-999, -1), investor_ids)
# Quantities are either raw integers (incl. zero and negatives) or relative to the
# investor's position in the model, so that edges such as `balance + 1` come up.
QUANTITY_MODES = (
    "half",
    "transferable",
    "transferable+1",
    "free",
    "free+1",
    "balance",
    "balance+1",
    "frozen",
    "frozen+1",
)


def quantities(*first: str) -> st.SearchStrategy[int | str]:
    """Quantity picks, a third of them the modes that suit the command."""
    return st.one_of(st.sampled_from(first), st.sampled_from(QUANTITY_MODES), st.integers(-2, 60))


# Amounts: integers (valid and not), edges of the asset's terms, and the same
# value as a string of digits (accepted), a float or a bool (validation errors).
AMOUNT_MODES = ("unit*7", "max", "max+1", "min", "min-1", "unit", "unit-1", "digits", "float", "bool")
# (hypothesis favours the first branch of `one_of` and the first element of `sampled_from`)
amounts = st.one_of(
    st.integers(200_000, 5_000_000),
    st.sampled_from(AMOUNT_MODES),
    st.integers(100_000, 5_000_000),
    st.integers(-3, 6_000_000),
)
VOTE_OPTIONS = ("yes", "no", "abstain", "maybe")
# The clock can jump exactly to the next lock-up end, proposal deadline or KYC
# expiry (or one second before it), so that every `<` versus `<=` is tested.
DEADLINES = ("lockup", "closes", "kyc", "lockup-1", "closes-1", "kyc-1")


# --------------------------------------------------------------------------- stores


StoreFactory = Callable[[], tuple[str, Callable[[], None]]]


def sqlite_store() -> tuple[str, Callable[[], None]]:
    """A fresh SQLite event store in a temporary directory, and how to remove it."""
    directory = tempfile.mkdtemp(prefix="ledger-pbt-")
    return f"sqlite:///{directory}/ledger.sqlite3", lambda: shutil.rmtree(directory, ignore_errors=True)


def postgres_store() -> tuple[str, Callable[[], None]]:
    """A PostgreSQL URL with a fresh schema of its own (as the `pg_schema_url` fixture), and its drop."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", drop


# --------------------------------------------------------------------------- the reference model


@dataclass
class InvestorModel:
    country: str
    accredited: bool
    kyc: str = "pending"
    expires_at: datetime | None = None


@dataclass
class InvestmentModel:
    investment_id: str
    investor_id: str
    quantity: int
    status: str = "pending_payment"


@dataclass
class DistributionModel:
    distribution_id: str
    amount: int
    entitlements: dict[str, int]
    paid: set[str] = field(default_factory=set)


@dataclass
class ProposalModel:
    proposal_id: str
    options: list[str]
    quorum_bps: int
    closes_at: datetime | None
    supply: int
    weights: dict[str, int]
    votes: dict[str, tuple[str, int]] = field(default_factory=dict)
    result: str | None = None


@dataclass
class Model:
    """What the ledger should hold, kept in plain dicts and decided independently of `src/`."""

    terms: dict[str, Any]
    investors: dict[str, InvestorModel]
    status: str = "draft"
    offering_open: bool = False
    paused: bool = False
    balances: dict[str, int] = field(default_factory=dict)
    frozen: dict[str, int] = field(default_factory=dict)
    address_frozen: set[str] = field(default_factory=set)
    reserved: dict[str, int] = field(default_factory=dict)
    lots: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    investments: list[InvestmentModel] = field(default_factory=list)
    distributions: list[DistributionModel] = field(default_factory=list)
    proposals: list[ProposalModel] = field(default_factory=list)
    # (position of a command's last event, balances after it): the cap table over time
    history: list[tuple[int, dict[str, int]]] = field(default_factory=list)

    # ----- derived quantities -----

    @property
    def total_supply(self) -> int:
        return sum(self.balances.values())

    @property
    def total_reserved(self) -> int:
        return sum(self.reserved.values())

    def balance(self, investor_id: str) -> int:
        return self.balances.get(investor_id, 0)

    def frozen_of(self, investor_id: str) -> int:
        return self.frozen.get(investor_id, 0)

    def locked(self, investor_id: str, now: datetime) -> int:
        """Quantity issued less than `lockup_seconds` ago, capped at `balance - frozen` (SPEC 4.3)."""
        lockup = timedelta(seconds=self.terms["lockup_seconds"])
        recent = sum(q for issued_at, q in self.lots.get(investor_id, []) if now - issued_at < lockup)
        return min(recent, self.balance(investor_id) - self.frozen_of(investor_id))

    def transferable(self, investor_id: str, now: datetime) -> int:
        return self.balance(investor_id) - self.frozen_of(investor_id) - self.locked(investor_id, now)

    def eligible(self, investor_id: str, now: datetime) -> bool:
        investor = self.investors[investor_id]
        kyc_ok = investor.kyc == "approved" and (investor.expires_at is None or investor.expires_at > now)
        allowed = self.terms["allowed_countries"]
        return (
            kyc_ok
            and (not allowed or investor.country in allowed)
            and (investor.accredited or not self.terms["accredited_only"])
        )

    def prospective_holders(self) -> set[str]:
        """Holders plus investors with a pending investment (the implementation counts both)."""
        return set(self.balances) | set(self.reserved)

    def holders_limit_hit(self, investor_id: str) -> bool:
        limit = self.terms["max_holders"]
        holders = self.prospective_holders()
        return limit is not None and investor_id not in holders and len(holders) >= limit

    def balance_limit_hit(self, investor_id: str, quantity: int) -> bool:
        limit = self.terms["max_balance"]
        held = self.balance(investor_id) + self.reserved.get(investor_id, 0)
        return limit is not None and held + quantity > limit

    def balances_at(self, position: int) -> dict[str, int]:
        """The cap table as of a global position: after the last command ending at or before it."""
        index = bisect.bisect_right([p for p, _ in self.history], position)
        return dict(self.history[index - 1][1]) if index else {}

    # ----- expected outcomes (None = success), in the rule order of SPEC 4.3 -----

    def purchase(self, amount: int) -> tuple[int, int, int]:
        scale = 10 ** self.terms["decimals"]
        price = self.terms["unit_price"]
        quantity = math.floor(Fraction(amount * scale, price))
        accepted = math.ceil(Fraction(quantity * price, scale))
        return quantity, accepted, amount - accepted

    def investment_error(self, investor_id: str, amount: int | None, now: datetime) -> str | None:
        """`amount` None: not an integer nor a string of digits."""
        t = self.terms
        if amount is None or amount < 0:
            return "validation_error"
        if investor_id not in self.investors:
            return "not_found"
        if self.status == "draft" or not self.offering_open:
            return "asset_not_offering"
        if not self.eligible(investor_id, now):
            return "investor_not_eligible"
        if amount < t["min_investment"]:
            return "amount_below_minimum"
        if amount > t["max_investment"]:
            return "amount_above_maximum"
        quantity = self.purchase(amount)[0]
        if quantity == 0:
            return "amount_too_small"
        if self.total_supply + self.total_reserved + quantity > t["authorized_supply"]:
            return "authorized_supply_exceeded"
        if self.holders_limit_hit(investor_id):
            return "max_holders_exceeded"
        if self.balance_limit_hit(investor_id, quantity):
            return "max_balance_exceeded"
        return None

    def transfer_error(self, sender: str, receiver: str, quantity: int, now: datetime) -> str | None:
        if sender not in self.investors or receiver not in self.investors:
            return "not_found"
        if quantity <= 0:
            return "invalid_quantity"
        if sender == receiver:
            return "same_investor"
        if self.paused:
            return "asset_paused"
        if sender in self.address_frozen or receiver in self.address_frozen:
            return "investor_frozen"
        if quantity > self.transferable(sender, now):
            return "insufficient_balance"
        if not self.eligible(receiver, now):
            return "investor_not_eligible"
        if self.holders_limit_hit(receiver):
            return "max_holders_exceeded"
        if self.balance_limit_hit(receiver, quantity):
            return "max_balance_exceeded"
        return None

    def forced_error(self, sender: str, receiver: str, quantity: int) -> str | None:
        """Pause, freezes, lock-up and eligibility are ignored; the balance must cover the quantity."""
        if sender not in self.investors or receiver not in self.investors:
            return "not_found"
        if quantity <= 0:
            return "invalid_quantity"
        if sender == receiver:
            return "same_investor"
        if self.balance(sender) < quantity:
            return "insufficient_balance"
        return None

    # ----- effects -----

    def take(self, investor_id: str, quantity: int) -> None:
        """Removes tokens the forced way: frozen tokens are released only as far as needed."""
        free = self.balance(investor_id) - self.frozen_of(investor_id)
        self.set_frozen(investor_id, self.frozen_of(investor_id) - max(0, quantity - free))
        self.set_balance(investor_id, self.balance(investor_id) - quantity)

    def set_balance(self, investor_id: str, quantity: int) -> None:
        assert quantity >= 0
        if quantity:
            self.balances[investor_id] = quantity
        else:
            self.balances.pop(investor_id, None)

    def set_frozen(self, investor_id: str, quantity: int) -> None:
        assert quantity >= 0
        if quantity:
            self.frozen[investor_id] = quantity
        else:
            self.frozen.pop(investor_id, None)

    def set_reserved(self, investor_id: str, quantity: int) -> None:
        assert quantity >= 0
        if quantity:
            self.reserved[investor_id] = quantity
        else:
            self.reserved.pop(investor_id, None)


def allocate(amount: int, holdings: dict[str, int]) -> dict[str, int]:
    """Largest remainder, written independently: exact shares as fractions, ties by id ascending."""
    total = sum(holdings.values())
    exact = {i: Fraction(amount * q, total) for i, q in holdings.items()}
    shares = {i: math.floor(s) for i, s in exact.items()}
    leftover = amount - sum(shares.values())
    by_remainder = sorted(exact, key=lambda i: (-(exact[i] - shares[i]), i))
    for investor_id in by_remainder[:leftover]:
        shares[investor_id] += 1
    return shares


def tally_result(proposal: ProposalModel) -> str:
    tally = dict.fromkeys(proposal.options, 0)
    for option, weight in proposal.votes.values():
        tally[option] += weight
    cast = sum(tally.values())
    if cast < math.ceil(Fraction(proposal.supply * proposal.quorum_bps, 10_000)):
        return "no_quorum"
    ranked = sorted(tally.items(), key=lambda item: -item[1])
    if ranked[0][1] == ranked[1][1]:
        return "tied"
    return ranked[0][0]


def public_state(aggregate: Any) -> dict[str, Any]:
    """An aggregate's state without the library's private fields, plus its identity and version."""
    state = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
    return {**state, "id": aggregate.id, "version": aggregate.version, "type": type(aggregate).__name__}


# --------------------------------------------------------------------------- the state machine


class LedgerMachine(RuleBasedStateMachine):
    """Random commands against the ledger and the model; both must always agree."""

    make_store: ClassVar[StoreFactory] = staticmethod(sqlite_store)

    def __init__(self) -> None:
        super().__init__()
        self.url, self.drop_store = type(self).make_store()
        self.clock = FakeClock()
        self.app = LedgerApplication(store_env(self.url), clock=self.clock)
        self.model: Model | None = None
        self.head = 0

    # ----- helpers -----

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    @property
    def now(self) -> datetime:
        return self.clock.now

    def expect(self, expected: str | None, command: Callable[[], Outcome]) -> Outcome | None:
        """Runs a command; it must succeed iff `expected` is None, else fail with exactly that code."""
        try:
            outcome = command()
        except LedgerError as error:
            rejection: LedgerError | None = error
        else:
            rejection = None
        if rejection is not None:
            got = f"{rejection.code}: {rejection.detail}"
            assert rejection.code == expected, f"expected {expected or 'success'}, got {got}"
            assert self.app.admin.head_position() == self.head, "a rejected command appended events"
            return None
        assert expected is None, f"expected {expected}, but the command succeeded with {outcome.result}"
        head = self.app.admin.head_position()
        assert outcome.position == head > self.head, (outcome.position, head, self.head)
        self.head = head
        return outcome

    def committed(self) -> None:
        """Records the cap table after a successful command, for distributions as of a position."""
        self.m.history.append((self.head, dict(self.m.balances)))

    @staticmethod
    def pick(pick: Pick, among: Collection[str]) -> str:
        """A name as drawn, or the `pick`-th of `among` (any investor if `among` is empty)."""
        if isinstance(pick, str):
            return pick
        candidates = sorted(among) or list(INVESTORS)
        return candidates[pick % len(candidates)]

    def holder(self, pick: Pick) -> str:
        if isinstance(pick, int) and pick < 0:
            return self.pick(-pick, self.m.frozen or self.m.balances)
        return self.pick(pick, self.m.balances)

    def buyer(self, pick: Pick) -> str:
        eligible = [i for i in self.m.investors if self.m.eligible(i, self.now)]
        if isinstance(pick, int) and pick < 0:
            return self.pick(-pick, [i for i in eligible if i not in self.m.balances] or eligible)
        return self.pick(pick, eligible)

    def quantity(self, pick: int | str, investor_id: str) -> int:
        if isinstance(pick, int):
            return pick
        m = self.m
        balance, frozen = m.balance(investor_id), m.frozen_of(investor_id)
        transferable = m.transferable(investor_id, self.now) if investor_id in m.investors else 0
        return {
            "balance": balance,
            "balance+1": balance + 1,
            "transferable": transferable,
            "transferable+1": transferable + 1,
            "free": balance - frozen,
            "free+1": balance - frozen + 1,
            "frozen": frozen,
            "frozen+1": frozen + 1,
            "half": balance // 2,
        }[pick]

    def amount(self, pick: int | str) -> Any:
        if isinstance(pick, int):
            return pick
        t = self.m.terms
        unit = -(-t["unit_price"] // 10 ** t["decimals"])  # the money of one base unit
        return {
            "digits": str(unit * 3),
            "float": float(unit * 3),
            "bool": True,
            "min": t["min_investment"],
            "min-1": t["min_investment"] - 1,
            "max": t["max_investment"],
            "max+1": t["max_investment"] + 1,
            "unit": unit,
            "unit-1": unit - 1,
            "unit*7": unit * 7,
        }[pick]

    # ----- setup -----

    @initialize(
        decimals=st.sampled_from([0, 2]),
        unit_price=st.sampled_from([100_000, 150_000, 33_333]),
        supply_units=st.integers(20, 400),
        min_investment=st.sampled_from([0, 50_000, 100_000]),
        max_investment=st.sampled_from([1_000_000, 5_000_000]),
        max_holders=st.none() | st.integers(1, 4),
        max_balance_units=st.none() | st.integers(10, 150),
        allowed_countries=st.sampled_from([[], [], ["ID", "SG"]]),
        accredited_only=st.sampled_from([False, False, False, False, False, True]),
        lockup_seconds=st.sampled_from([0, 0, 0, 60, 3_600, 86_400]),
        stage=st.sampled_from(["open"] * 6 + ["approved", "draft"]),
        countries=st.lists(st.sampled_from(COUNTRIES), min_size=len(INVESTORS), max_size=len(INVESTORS)),
        accredited=st.lists(st.booleans(), min_size=len(INVESTORS), max_size=len(INVESTORS)),
        kyc=st.lists(
            st.sampled_from(["approved"] * 8 + ["pending", "rejected"]),
            min_size=len(INVESTORS),
            max_size=len(INVESTORS),
        ),
        seed=st.lists(st.tuples(st.integers(0, 999), amounts, st.booleans()), min_size=3, max_size=6),
    )
    def setup(
        self,
        decimals: int,
        unit_price: int,
        supply_units: int,
        min_investment: int,
        max_investment: int,
        max_holders: int | None,
        max_balance_units: int | None,
        allowed_countries: list[str],
        accredited_only: bool,
        lockup_seconds: int,
        stage: str,
        countries: list[str],
        accredited: list[bool],
        kyc: list[str],
        seed: list[tuple[int, int | str, bool]],
    ) -> None:
        scale = 10**decimals
        terms: dict[str, Any] = {
            "asset_id": ASSET,
            "name": "Property-based toll road",
            "symbol": "PBT",
            "decimals": decimals,
            "currency": "IDR",
            "unit_price": unit_price,
            "authorized_supply": supply_units * scale,
            "min_investment": min_investment,
            "max_investment": max_investment,
            "max_holders": max_holders,
            "max_balance": None if max_balance_units is None else max_balance_units * scale,
            "allowed_countries": allowed_countries,
            "accredited_only": accredited_only,
            "lockup_seconds": lockup_seconds,
        }
        self.model = Model(terms=terms, investors={})
        self.expect(None, lambda: self.app.register_asset(terms))
        self.committed()
        if stage != "draft":
            self.expect(None, lambda: self.app.approve_asset(ASSET))
            self.m.status = "approved"
            self.committed()
        if stage == "open":
            self.expect(None, lambda: self.app.set_offering(ASSET, True))
            self.m.offering_open = True
            self.committed()
        profiles = zip(INVESTORS, countries, accredited, kyc, strict=True)
        for investor_id, country, is_accredited, status in profiles:
            register = partial(self.app.register_investor, investor_id, country, wallet_for(investor_id))
            self.expect(None, partial(register, is_accredited))
            self.m.investors[investor_id] = InvestorModel(country, is_accredited)
            self.committed()
            if status != "pending":
                self.expect(None, partial(self.app.update_kyc, investor_id, status))
                self.m.investors[investor_id].kyc = status
                self.committed()
        for buyer, amount, pay in seed:  # some holdings (and pending investments) to start from
            investment = self.place(self.buyer(buyer), self.amount(amount))
            if investment is not None and pay:
                self.confirm(investment)

    # ----- asset lifecycle -----

    # ----- investments -----

    def place(self, investor_id: str, raw_amount: Any) -> InvestmentModel | None:
        if isinstance(raw_amount, str) and raw_amount.isdigit():
            amount: int | None = int(raw_amount)
        elif isinstance(raw_amount, int) and not isinstance(raw_amount, bool):
            amount = raw_amount
        else:
            amount = None
        expected = self.m.investment_error(investor_id, amount, self.now)
        outcome = self.expect(expected, lambda: self.app.place_investment(investor_id, ASSET, raw_amount))
        if outcome is None:
            return None
        assert amount is not None
        quantity, accepted, refund = self.m.purchase(amount)
        result = outcome.result
        assert (result["quantity"], result["accepted_amount"], result["refund_amount"]) == (
            quantity,
            accepted,
            refund,
        )
        assert result["status"] == "pending_payment"
        assert 0 <= refund < math.ceil(Fraction(self.m.terms["unit_price"], 10 ** self.m.terms["decimals"]))
        investment = InvestmentModel(str(result["investment_id"]), investor_id, quantity)
        self.m.investments.append(investment)
        self.m.set_reserved(investor_id, self.m.reserved.get(investor_id, 0) + quantity)
        self.committed()
        return investment

    def confirm(self, investment: InvestmentModel) -> None:
        expected = None if investment.status == "pending_payment" else "invalid_state"
        ref = f"pay-{len(self.m.history)}"
        outcome = self.expect(expected, lambda: self.app.confirm_payment(investment.investment_id, ref))
        if outcome is None:
            return
        assert outcome.result["status"] == "settled"
        m = self.m
        investment.status = "settled"
        m.set_reserved(investment.investor_id, m.reserved[investment.investor_id] - investment.quantity)
        m.set_balance(investment.investor_id, m.balance(investment.investor_id) + investment.quantity)
        m.lots.setdefault(investment.investor_id, []).append((self.now, investment.quantity))
        self.committed()

    @rule(investor_id=buyers, amount=amounts)
    def place_investment(self, investor_id: Pick, amount: int | str) -> None:
        self.place(self.buyer(investor_id), self.amount(amount))

    # One argument and an early name on purpose: hypothesis favours the first rule
    # of its (arguments, name) order, and this is the one that builds holdings.
    @rule(order=st.tuples(buyers, amounts))
    def acquire_tokens(self, order: tuple[Pick, int | str]) -> None:
        """An investment whose payment is confirmed at once."""
        investment = self.place(self.buyer(order[0]), self.amount(order[1]))
        if investment is not None:
            self.confirm(investment)

    @precondition(lambda self: self.model is not None and self.m.investments)
    @rule(index=st.integers(0, 1_000))
    def confirm_payment(self, index: int) -> None:
        self.confirm(self.m.investments[index % len(self.m.investments)])

    @precondition(lambda self: self.model is not None and self.m.investments)
    @rule(index=st.integers(0, 1_000))
    def cancel_investment(self, index: int) -> None:
        investment = self.m.investments[index % len(self.m.investments)]
        expected = None if investment.status == "pending_payment" else "invalid_state"
        outcome = self.expect(expected, lambda: self.app.cancel_investment(investment.investment_id))
        if outcome is not None:
            assert outcome.result["status"] == "cancelled"
            investment.status = "cancelled"
            reserved = self.m.reserved[investment.investor_id]
            self.m.set_reserved(investment.investor_id, reserved - investment.quantity)
            self.committed()

    # ----- transfers, redemptions, freezes -----

    @rule(sender_pick=holders, receiver_pick=receivers, pick=quantities("transferable", "half"))
    def transfer(self, sender_pick: Pick, receiver_pick: Pick, pick: int | str) -> None:
        if isinstance(sender_pick, int) and sender_pick >= 0:  # someone who can move tokens
            sender = self.pick(sender_pick, self.movable() or self.m.balances)
        else:
            sender = self.holder(sender_pick)
        self.send(sender, self.buyer(receiver_pick), self.quantity(pick, sender))

    @rule(route=st.tuples(st.integers(0, 999), receivers, st.sampled_from(["all", "half", "one"])))
    def move_tokens(self, route: tuple[int, Pick, str]) -> None:
        """A transfer likely to pass: what the sender may move, to an eligible investor."""
        sender = self.pick(route[0], self.movable())
        transferable = self.m.transferable(sender, self.now)
        quantity = {"all": transferable, "half": max(1, transferable // 2), "one": 1}[route[2]]
        self.send(sender, self.buyer(route[1]), quantity)

    def movable(self) -> list[str]:
        return [i for i in self.m.balances if self.m.transferable(i, self.now) > 0]

    def send(self, sender: str, receiver: str, quantity: int) -> None:
        expected = self.m.transfer_error(sender, receiver, quantity, self.now)
        if self.expect(expected, lambda: self.app.transfer(ASSET, sender, receiver, quantity)):
            self.m.set_balance(sender, self.m.balance(sender) - quantity)
            self.m.set_balance(receiver, self.m.balance(receiver) + quantity)
            self.committed()

    @rule(sender_pick=holders, receiver_pick=receivers, pick=quantities("free+1", "balance", "half"))
    def forced_transfer(self, sender_pick: Pick, receiver_pick: Pick, pick: int | str) -> None:
        sender, receiver = self.holder(sender_pick), self.buyer(receiver_pick)
        quantity = self.quantity(pick, sender)
        expected = self.m.forced_error(sender, receiver, quantity)
        if self.expect(expected, lambda: self.app.transfer(ASSET, sender, receiver, quantity, forced=True)):
            self.m.take(sender, quantity)
            self.m.set_balance(receiver, self.m.balance(receiver) + quantity)
            self.committed()

    @rule(holder=holders, pick=quantities("free+1", "half", "balance"))
    def redeem(self, holder: Pick, pick: int | str) -> None:
        investor_id = self.holder(holder)
        quantity = self.quantity(pick, investor_id)
        if investor_id not in self.m.investors:
            expected: str | None = "not_found"
        elif quantity <= 0:
            expected = "invalid_quantity"
        elif self.m.balance(investor_id) < quantity:
            expected = "insufficient_balance"
        else:
            expected = None
        if self.expect(expected, lambda: self.app.redeem(ASSET, investor_id, quantity)):
            self.m.take(investor_id, quantity)
            self.committed()

    @rule(holder=holders, pick=quantities("half", "free", "free+1"))
    def freeze_tokens(self, holder: Pick, pick: int | str) -> None:
        investor_id = self.holder(holder)
        quantity = self.quantity(pick, investor_id)
        m = self.m
        if investor_id not in m.investors:
            expected: str | None = "not_found"
        elif quantity <= 0:
            expected = "invalid_quantity"
        elif m.frozen_of(investor_id) + quantity > m.balance(investor_id):
            expected = "insufficient_balance"
        else:
            expected = None
        if self.expect(expected, lambda: self.app.freeze_tokens(ASSET, investor_id, quantity)):
            m.set_frozen(investor_id, m.frozen_of(investor_id) + quantity)
            self.committed()

    @rule(holder=holders, pick=quantities("frozen", "frozen+1"))
    def unfreeze_tokens(self, holder: Pick, pick: int | str) -> None:
        investor_id = self.holder(-holder if isinstance(holder, int) else holder)
        quantity = self.quantity(pick, investor_id)
        m = self.m
        if investor_id not in m.investors:
            expected: str | None = "not_found"
        elif quantity <= 0 or quantity > m.frozen_of(investor_id):
            expected = "invalid_quantity"
        else:
            expected = None
        if self.expect(expected, lambda: self.app.unfreeze_tokens(ASSET, investor_id, quantity)):
            m.set_frozen(investor_id, m.frozen_of(investor_id) - quantity)
            self.committed()

    @rule(holder=holders, freeze=st.booleans())
    def freeze_or_unfreeze_address(self, holder: Pick, freeze: bool) -> None:
        investor_id = self.holder(holder)
        m = self.m
        if investor_id not in m.investors:
            expected: str | None = "not_found"
        elif (investor_id in m.address_frozen) == freeze:
            expected = "invalid_state"
        else:
            expected = None
        command = self.app.freeze_investor if freeze else self.app.unfreeze_investor
        if self.expect(expected, lambda: command(ASSET, investor_id)):
            if freeze:
                m.address_frozen.add(investor_id)
            else:
                m.address_frozen.discard(investor_id)
            self.committed()

    # ----- distributions -----

    @rule(
        amount=st.integers(1, 10_000_000) | st.integers(-1, 3) | st.just(10**30 + 7),
        position=st.none() | st.integers(0, 10_000),
    )
    def declare_distribution(self, amount: int, position: int | None) -> None:
        record_position = None if position is None else position % (self.head + 3)
        if amount < 1:
            expected: str | None = "validation_error"
        elif record_position is not None and record_position > self.head:
            expected = "validation_error"
        else:
            expected = None
        holdings = dict(self.m.balances) if record_position is None else self.m.balances_at(record_position)
        if expected is None and not holdings:
            expected = "invalid_state"
        outcome = self.expect(expected, lambda: self.app.declare_distribution(ASSET, amount, record_position))
        if outcome is None:
            return
        distribution_id = str(outcome.result["distribution_id"])
        entitlements = self.app.get_distribution(distribution_id).entitlements
        total = sum(holdings.values())
        assert set(entitlements) == set(holdings)
        assert sum(entitlements.values()) == amount
        for investor_id, share in entitlements.items():
            assert abs(share * total - amount * holdings[investor_id]) < total
        assert entitlements == allocate(amount, holdings)
        self.m.distributions.append(DistributionModel(distribution_id, amount, dict(entitlements)))
        self.committed()

    @precondition(lambda self: self.model is not None and self.m.distributions)
    @rule(index=st.integers(0, 1_000), investor_id=st.none() | investor_ids)
    def pay_distribution(self, index: int, investor_id: str | None) -> None:
        distribution = self.m.distributions[index % len(self.m.distributions)]
        unpaid = sorted(set(distribution.entitlements) - distribution.paid)
        if investor_id is None:
            expected: str | None = None if unpaid else "invalid_state"
            paying = unpaid
        elif investor_id not in distribution.entitlements:
            expected, paying = "not_found", []
        elif investor_id in distribution.paid:
            expected, paying = "invalid_state", []
        else:
            expected, paying = None, [investor_id]
        outcome = self.expect(
            expected, lambda: self.app.pay_distribution(distribution.distribution_id, investor_id)
        )
        if outcome is not None:
            assert outcome.result["paid_investor_ids"] == paying
            distribution.paid.update(paying)
            self.committed()

    # ----- votes -----

    @rule(
        options=st.sampled_from([["yes", "no"], ["yes", "no", "abstain"]] * 3 + [["yes"], ["yes", "yes"]]),
        quorum_bps=st.sampled_from([1, 3_333, 5_000, 0, 10_000, 2_500, 10_001, -1]),
        closes_in=st.sampled_from([3_600, 86_400, 60, 0, -10]) | st.none() | st.integers(-10, 100_000),
    )
    def create_proposal(self, options: list[str], quorum_bps: int, closes_in: int | None) -> None:
        closes_at = None if closes_in is None else self.now + timedelta(seconds=closes_in)
        valid = len(set(options)) == len(options) >= 2 and 0 <= quorum_bps <= 10_000
        outcome = self.expect(
            None if valid else "validation_error",
            lambda: self.app.create_proposal(ASSET, "Widen the toll road?", options, quorum_bps, closes_at),
        )
        if outcome is not None:
            self.m.proposals.append(
                ProposalModel(
                    str(outcome.result["proposal_id"]),
                    list(options),
                    quorum_bps,
                    closes_at,
                    self.m.total_supply,
                    dict(self.m.balances),
                )
            )
            self.committed()

    @precondition(lambda self: self.model is not None and self.m.proposals)
    @rule(index=st.integers(0, 1_000), voter=holders, option=st.sampled_from(VOTE_OPTIONS))
    def cast_vote(self, index: int, voter: Pick, option: str) -> None:
        proposal = self.m.proposals[index % len(self.m.proposals)]
        investor_id = self.pick(abs(voter) if isinstance(voter, int) else voter, proposal.weights)
        weight = proposal.weights.get(investor_id, 0)
        past_deadline = proposal.closes_at is not None and self.now >= proposal.closes_at
        closed = proposal.result is not None or past_deadline
        if investor_id not in self.m.investors:
            expected: str | None = "not_found"
        elif weight <= 0:
            expected = "no_voting_power"
        elif investor_id in proposal.votes:
            expected = "already_voted"
        elif closed:
            expected = "proposal_closed"
        elif option not in proposal.options:
            expected = "invalid_option"
        else:
            expected = None
        outcome = self.expect(expected, lambda: self.app.cast_vote(proposal.proposal_id, investor_id, option))
        if outcome is not None:
            assert outcome.result["weight"] == weight
            proposal.votes[investor_id] = (option, weight)
            self.committed()

    @precondition(lambda self: self.model is not None and self.m.proposals)
    @rule(index=st.integers(0, 1_000))
    def close_proposal(self, index: int) -> None:
        proposal = self.m.proposals[index % len(self.m.proposals)]
        expected = "proposal_closed" if proposal.result is not None else None
        outcome = self.expect(expected, lambda: self.app.close_proposal(proposal.proposal_id))
        if outcome is not None:
            proposal.result = tally_result(proposal)
            assert outcome.result["result"] == proposal.result
            self.committed()

    # ----- asset lifecycle, KYC, time -----

    @rule(action=st.sampled_from(["approve", "open", "open", "close"]))
    def lifecycle(self, action: str) -> None:
        if action == "approve":
            expected = None if self.m.status == "draft" else "invalid_state"
            if self.expect(expected, lambda: self.app.approve_asset(ASSET)):
                self.m.status = "approved"
                self.committed()
            return
        open_ = action == "open"
        expected = "invalid_state" if self.m.status == "draft" or self.m.offering_open == open_ else None
        if self.expect(expected, lambda: self.app.set_offering(ASSET, open_)):
            self.m.offering_open = open_
            self.committed()

    @rule(pause=st.booleans())
    def pause_or_unpause(self, pause: bool) -> None:
        expected = "invalid_state" if self.m.paused == pause else None
        command = self.app.pause_asset if pause else self.app.unpause_asset
        if self.expect(expected, lambda: command(ASSET)):
            self.m.paused = pause
            self.committed()

    # ----- investors -----

    @rule(
        investor_id=investor_ids,
        status=st.sampled_from([*KYC_STATUSES, "approved", "approved", "suspended"]),
        expires_in=st.none() | st.integers(-100, 200_000),
    )
    def update_kyc(self, investor_id: str, status: str, expires_in: int | None) -> None:
        expires_at = None if expires_in is None else self.now + timedelta(seconds=expires_in)
        if status not in KYC_STATUSES or (expires_at is not None and status != "approved"):
            expected: str | None = "validation_error"
        elif investor_id not in self.m.investors:
            expected = "not_found"
        else:
            expected = None
        if self.expect(expected, lambda: self.app.update_kyc(investor_id, status, expires_at)):
            self.m.investors[investor_id].kyc = status
            self.m.investors[investor_id].expires_at = expires_at
            self.committed()

    @rule(seconds=st.sampled_from([3_601, 1, 3_600, 86_400]) | st.integers(0, 10**5))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(which=st.sampled_from(DEADLINES))
    def jump_to_deadline(self, which: str) -> None:
        """Moves time exactly to (or one second before) the next deadline of some kind."""
        kind, _, offset = which.partition("-")
        m = self.m
        lockup = timedelta(seconds=m.terms["lockup_seconds"])
        deadlines = {
            "lockup": [at + lockup for lots in m.lots.values() for at, _ in lots],
            "closes": [p.closes_at for p in m.proposals if p.closes_at is not None],
            "kyc": [i.expires_at for i in m.investors.values() if i.expires_at is not None],
        }[kind]
        ahead = sorted(d - timedelta(seconds=int(offset or 0)) for d in deadlines)
        target = next((d for d in ahead if d > self.now), None)
        if target is not None:
            self.clock.now = target

    # ----- after every step -----

    @invariant()
    def asset_matches_model_and_invariants_hold(self) -> None:
        if self.model is None:
            return
        m = self.m
        asset = self.app.get_asset(ASSET)
        # the register equals the model
        assert asset.balances == m.balances
        assert asset.frozen == m.frozen
        assert {i for i, flag in asset.address_frozen.items() if flag} == m.address_frozen
        assert asset.reserved == m.reserved
        assert (asset.status, asset.offering_open, asset.paused) == (m.status, m.offering_open, m.paused)
        for investor_id in INVESTORS:
            assert asset.locked_of(investor_id, self.now) == m.locked(investor_id, self.now), investor_id
        # SPEC 4.3 invariants
        assert sum(asset.balances.values()) == asset.total_supply == m.total_supply
        assert asset.total_supply <= asset.authorized_supply
        assert asset.total_reserved == sum(asset.reserved.values()) >= 0
        assert asset.total_supply + asset.total_reserved <= asset.authorized_supply
        assert all(balance > 0 for balance in asset.balances.values())
        for investor_id in asset.balances.keys() | asset.frozen.keys():
            assert 0 <= asset.frozen_of(investor_id) <= asset.balance_of(investor_id), investor_id

    # ----- at the end -----

    def teardown(self) -> None:
        # Hypothesis calls this in a `finally`: when a step has already failed, its
        # error is the one to report, not a replay of a half-run command sequence.
        failing = isinstance(sys.exc_info()[1], Exception)
        try:
            if self.model is not None and not failing:
                self.check_replay()
        finally:
            self.app.close()
            self.drop_store()

    def check_replay(self) -> None:
        m = self.m
        live: dict[UUID, Any] = {Asset.create_id(ASSET): self.app.get_asset(ASSET)}
        for investor_id in INVESTORS:
            live[Investor.create_id(investor_id)] = self.app.get_investor(investor_id)
            claim_id = WalletClaim.create_id(self.app.get_investor(investor_id).wallets[0])
            live[claim_id] = self.app.committer.read(claim_id)
        for investment in m.investments:
            placed = self.app.get_investment(investment.investment_id)
            assert (placed.investor_id, placed.quantity, placed.status) == (
                investment.investor_id,
                investment.quantity,
                investment.status,
            )
            live[placed.id] = placed
        for distribution in m.distributions:
            declared = self.app.get_distribution(distribution.distribution_id)
            assert declared.entitlements == distribution.entitlements
            assert sum(declared.entitlements.values()) == declared.amount == distribution.amount
            assert set(declared.paid) == distribution.paid
            live[declared.id] = declared
        for proposal in m.proposals:
            opened = self.app.get_proposal(proposal.proposal_id)
            assert opened.votes == proposal.votes
            assert (opened.result, opened.supply_at_snapshot) == (proposal.result, proposal.supply)
            live[opened.id] = opened

        fresh = LedgerApplication(store_env(self.url), clock=self.clock)
        try:
            for aggregate_id, aggregate in live.items():
                assert public_state(fresh.repository.get(aggregate_id)) == public_state(aggregate)
            verification = fresh.admin.verify()
            assert verification.ok, verification
            assert verification.head_position == self.head
            assert self.app.admin.verify().ok
        finally:
            fresh.close()


class PostgresLedgerMachine(LedgerMachine):
    make_store: ClassVar[StoreFactory] = staticmethod(postgres_store)


COMMON = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def test_random_commands_keep_the_register_equal_to_the_model_on_sqlite() -> None:
    run_state_machine_as_test(
        LedgerMachine, settings=settings(COMMON, max_examples=100, stateful_step_count=40)
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_random_commands_keep_the_register_equal_to_the_model_on_postgres() -> None:
    require_postgres()
    run_state_machine_as_test(
        PostgresLedgerMachine, settings=settings(COMMON, max_examples=20, stateful_step_count=30)
    )
