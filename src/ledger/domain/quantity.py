"""How the ledger's integers are written down, said once by their type.

`Quantity` is a quantity of tokens (`Amount` one of money): a non-negative exact integer. It is read
from a JSON integer or a string of digits (never a float or a bool; the ledger's rules, not the
shape, refuse a negative integer with their own codes) and written as a JSON string of digits, so
no consumer rounds it through a double. Every other integer of an answer (positions, counts, basis
points, decimals) is written as a JSON number. `Count` marks the integers of stored event data
that are written as numbers: stored data is read without a schema, so there an unmarked integer
is written as digits (the exact form), and a count says it is small.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

DIGITS = r"^[0-9]{1,40}$"
ANSWERED = r"^[0-9]+$"
SIGNED_ANSWERED = r"^-?[0-9]+$"


def digits(value: int) -> str:
    return str(value)


class Digits:
    """Marks an integer that is written as a JSON string of digits (`signed`: it may be negative,
    as a gain or a return is; only answers carry such integers; `money`: an amount of money in
    minor units rather than a quantity of tokens)."""

    def __init__(self, signed: bool = False, money: bool = False) -> None:
        self.signed, self.money = signed, money

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # A negative JSON integer passes the shape: that a quantity is positive is a rule of the
        # ledger, which answers it with its own code (`invalid_quantity`), not a shape error.
        number = core_schema.int_schema(strict=True)
        text = core_schema.no_info_after_validator_function(
            int, core_schema.str_schema(pattern=r"^-?[0-9]{1,40}$" if self.signed else DIGITS)
        )
        return core_schema.union_schema(
            [number, text],
            serialization=core_schema.plain_serializer_function_ser_schema(
                digits, when_used="json", return_schema=core_schema.str_schema()
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        answered = {"type": "string", "pattern": SIGNED_ANSWERED if self.signed else ANSWERED}
        if handler.mode == "serialization":
            return answered
        return {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": DIGITS}]}


class Number:
    """Marks an integer of stored event data that is written as a JSON number (a count, a
    position, basis points)."""


Quantity = Annotated[int, Digits()]
Amount = Annotated[int, Digits(money=True)]
SignedQuantity = Annotated[int, Digits(signed=True)]
Count = Annotated[int, Number()]
