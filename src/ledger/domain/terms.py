# ruff: noqa: RUF009  (`term` makes a dataclass field, as `dataclasses.field` does)
"""The terms an asset is registered with and what registers an investor, each declared once.

Each field says its type, its default, its check and its help; everything else is derived from
the fields: the validator (`parse`), the HTTP request model (`adapters.api.schemas`), the CLI
options (`adapters.cli`), the registration event's payload (`payload`) and the read model's row
(`row_of`). The registration events themselves stay as they are: they are the stored schema
(a new term is a new event field with a default, see the README's "Changing the domain").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from ledger.domain import values as v
from ledger.domain.quantity import Amount, Quantity
from ledger.errors import ValidationError

MAX_AMOUNT = 10**36
MAX_HOLDERS = 2**31 - 1  # a count of people; stored and shown as a plain integer

Check = Callable[[Any, str], Any]


def term(
    check: Check,
    *,
    default: Any = dataclasses.MISSING,
    help: str = "",
    argument: bool = False,
    digits: bool = False,
    option: str | None = None,
    cli_default: Any = dataclasses.MISSING,
    path: bool = False,
) -> Any:
    """A field with its check (`check(value, name)` returns the value normalised or raises a
    `ValidationError`), the help the CLI shows, whether the CLI takes it as an argument rather
    than an option, whether a request may give an integer that is not a `Quantity` as a string of
    digits too (`digits`), where the CLI differs, its option name and default (an operator's
    shorthand, not a rule), and whether an HTTP request gives it in its path rather than its body
    (`path`: the id of what the command acts on; the CLI takes it as an argument)."""
    meta = {
        "check": check,
        "help": help,
        "argument": argument or path,
        "digits": digits,
        "option": option,
        "cli_default": cli_default,
        "path": path,
    }
    return dataclasses.field(default=default, metadata=meta)


def optional(check: Check) -> Check:
    return lambda value, name: None if value is None else check(value, name)


def amount(minimum: int) -> Check:
    return lambda value, name: v.integer(value, name, minimum=minimum, maximum=MAX_AMOUNT)


def _countries(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValidationError(f"{name} must be a list of ISO 3166-1 alpha-2 codes")
    return tuple(sorted({v.country(c, name) for c in value}))


POSITIVE_AMOUNT, ANY_AMOUNT = amount(1), amount(0)
OPTIONAL_AMOUNT = optional(POSITIVE_AMOUNT)


class Terms:
    """What the typed values share: checked when made, read from a mapping, written as a payload."""

    WHAT = "terms"

    def __post_init__(self) -> None:
        fields = self.__dict__  # frozen: normalised in place, as `object.__setattr__` would
        for name, check in _checks(type(self)):  # type: ignore[arg-type]
            fields[name] = check(fields[name], name)
        self.check()

    def check(self) -> None:
        """Rules across fields (after each field's own check)."""

    @classmethod
    def parse(cls, given: Any) -> Self:
        """From an untrusted mapping (a request body, a CLI's options)."""
        if not isinstance(given, Mapping):
            raise ValidationError(f"{cls.WHAT} must be an object")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        unknown = set(given) - {f.name for f in fields}
        if unknown:
            raise ValidationError(f"unknown fields: {', '.join(sorted(unknown))}")
        missing = {f.name for f in fields if required(f)} - set(given)
        if missing:
            raise ValidationError(f"missing fields: {', '.join(sorted(missing))}")
        return cls(**given)

    def payload(self) -> dict[str, Any]:
        """The fields as the events and the idempotency record store them (lists, not tuples)."""
        return {k: list(value) if type(value) is tuple else value for k, value in self.__dict__.items()}

    @classmethod
    def row_of(cls, event: object) -> dict[str, Any]:
        """The read model's columns of these fields, from the registration event."""
        return {f.name: getattr(event, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


@functools.cache
def _checks(terms: type[Terms]) -> tuple[tuple[str, Check], ...]:
    return tuple((f.name, f.metadata["check"]) for f in dataclasses.fields(terms))  # type: ignore[arg-type]


def required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


@dataclass(frozen=True)
class AssetTerms(Terms):
    """The terms an asset is registered with."""

    WHAT = "asset terms"

    asset_id: str = term(lambda x, _: v.asset_id(x), argument=True)
    name: str = term(v.text)
    symbol: str = term(lambda x, n: v.text(x, n, max_length=16))
    decimals: int = term(lambda x, n: v.integer(x, n, minimum=0, maximum=18), cli_default=0)
    currency: str = term(lambda x, _: v.currency(x))
    unit_price: Amount = term(POSITIVE_AMOUNT, help="Minor units per whole token.")
    authorized_supply: Quantity = term(POSITIVE_AMOUNT, help="Base units.")
    min_investment: Amount = term(ANY_AMOUNT)
    max_investment: Amount = term(POSITIVE_AMOUNT)
    max_holders: int | None = term(
        optional(lambda x, n: v.integer(x, n, minimum=1, maximum=MAX_HOLDERS)), default=None, digits=True
    )
    max_balance: Quantity | None = term(OPTIONAL_AMOUNT, default=None)
    allowed_countries: tuple[str, ...] = term(
        _countries, default=(), help="Repeat for each country.", option="--allowed-country"
    )
    accredited_only: bool = term(v.boolean, default=False)
    lockup_seconds: int = term(lambda x, n: v.integer(x, n, minimum=0, maximum=10**10), default=0)

    def check(self) -> None:
        if self.max_investment < self.min_investment:
            raise ValidationError("max_investment must not be below min_investment")


@dataclass(frozen=True)
class InvestorRegistration(Terms):
    """What registers an investor (KYC starts pending)."""

    WHAT = "investor"

    investor_id: str = term(lambda x, _: v.investor_id(x), argument=True)
    country: str = term(v.country, argument=True)
    wallet: str = term(v.wallet, argument=True)
    accredited: bool = term(v.boolean, default=False)
