"""The OpenAPI document is a typed contract: every operation declares its success body and the
problems it can answer, quantities are strings of digits, and the names a generated client
takes from it (operation ids, schema names) are stable and unique.

The checks are generic over every operation the app has, so a new endpoint is held to them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.api.responses import Quantity, codes_of, mirrored, status_of
from ledger.domain.chain import MirrorMovedError
from ledger.errors import ConcurrencyError
from tests.e2e.conftest import PROBLEM, app_document

DOCUMENT = app_document()
PROBLEM_REF = "#/components/schemas/Problem"
OPERATIONS = [
    pytest.param(path, method, operation, id=f"{method.upper()} {path}")
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
]


def _values(node: Any, key: str) -> Iterator[str]:
    """Every string under `key` in a JSON tree (`$ref` targets, `type` names)."""
    if isinstance(node, dict):
        if isinstance(node.get(key), str):
            yield node[key]
        for value in node.values():
            yield from _values(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value, key)


def _refs(node: Any) -> Iterator[str]:
    return _values(node, "$ref")


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _reachable(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and every schema it refers to, transitively."""
    seen: dict[str, dict[str, Any]] = {}
    todo = list(_refs(schema))
    while todo:
        ref = todo.pop()
        if ref not in seen:
            seen[ref] = _resolve(ref)
            todo += _refs(seen[ref])
    return [schema, *seen.values()]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_operation_declares_its_success_body(path: str, method: str, operation: dict[str, Any]) -> None:
    successes = {status: r for status, r in operation["responses"].items() if status.startswith("2")}
    assert successes, "no 2xx response"
    for status, response in successes.items():
        content = response.get("content")
        assert content, f"{status} has no content"
        for media, body in content.items():
            assert body.get("schema") not in (None, {}), f"{status} {media} has no schema"


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_problem_refers_to_the_problem_schema(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    for status, response in operation["responses"].items():
        if status.startswith("4") or PROBLEM in response.get("content", {}):
            assert response["content"][PROBLEM]["schema"] == {"$ref": PROBLEM_REF}, status
            assert response["description"].startswith("Problem: "), status


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_v1_operation_declares_auth_and_input_problems(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    if not path.startswith("/v1/"):
        return
    declared = set(operation["responses"])
    assert {"401", "403", "422", "503"} <= declared
    if method == "post":
        assert {"409", "413"} <= declared  # an idempotency key reused, a body too large


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_no_answer_carries_a_float(path: str, method: str, operation: dict[str, Any]) -> None:
    """Quantities and amounts are strings of digits; positions, counts and rates are integers."""
    for response in operation["responses"].values():
        for body in response.get("content", {}).values():
            for schema in _reachable(body.get("schema", {})):
                assert "number" not in set(_values(schema, "type")), schema.get("title")


def test_the_problem_schema_names_every_field_and_the_codes() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    described = problem["properties"]["code"]["description"]
    for code in ("unauthorized", "forbidden", "not_found", "validation_error", "insufficient_balance"):
        assert code in described


def test_quantities_are_documented_as_strings_of_digits() -> None:
    holder = DOCUMENT["components"]["schemas"]["CapTableHolder"]["properties"]
    assert holder["quantity"]["type"] == "string" and holder["quantity"]["pattern"] == "^[0-9]+$"
    assert holder["ownership_bps"]["type"] == "integer"


def test_every_reference_resolves() -> None:
    for ref in set(_refs(DOCUMENT)):
        assert ref.startswith("#/components/schemas/"), ref
        _resolve(ref)


def test_operation_ids_are_unique_function_names() -> None:
    ids = [operation["operationId"] for _, _, operation in (p.values for p in OPERATIONS)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(re.fullmatch("[a-z][a-z0-9_]*", i) for i in ids), ids


def test_schema_names_are_plain_identifiers() -> None:
    """A name clash between two models makes FastAPI qualify them with their module path."""
    for name in DOCUMENT["components"]["schemas"]:
        assert re.fullmatch("[A-Za-z][A-Za-z0-9_]*", name) and "__" not in name, name


def test_an_error_subclass_answers_its_base_status() -> None:
    """`MirrorMovedError` is a `ConcurrencyError`: 409, as its code says, not a rule's 422."""
    assert status_of(MirrorMovedError) == status_of(ConcurrencyError) == 409
    assert "concurrency_conflict" not in codes_of(422)


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_every_v1_operation_needs_the_api_key(path: str, method: str, operation: dict[str, Any]) -> None:
    needs = operation.get("security") == [{"apiKey": []}]
    assert needs == path.startswith("/v1/")
    assert DOCUMENT["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
def test_an_optional_body_is_declared_as_its_model_alone(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    """Not `model | null`, which generated clients cannot send when the body is left out."""
    body = operation.get("requestBody")
    if body is not None and not body.get("required"):
        for media in body["content"].values():
            assert {"type": "null"} not in media["schema"].get("anyOf", []), media


def test_a_read_model_field_of_type_int_must_say_how_it_is_answered() -> None:
    """An `int` may be a quantity (a string of digits) or a count (a number): never guessed."""

    @dataclass
    class Row:
        investor_id: str
        quantity: int

    with pytest.raises(TypeError, match=r"Row\.quantity"):
        mirrored(Row, "Row")
    quantity = mirrored(Row, "Row", quantity=(Quantity, ...)).model_json_schema()["properties"]["quantity"]
    assert (quantity["type"], quantity["pattern"]) == ("string", "^[0-9]+$")
