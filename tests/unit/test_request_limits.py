"""The request-body guard (SPEC 5, amendments: limits): size and JSON depth are checked before
anything parses the body, without recursion, and an accepted body reaches the app unchanged."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from adapters.api.limits import RECURSION_LIMIT, BodyLimits, json_depth_exceeds, restore_recursion_limit

pytestmark = pytest.mark.unit
MAX_BYTES, MAX_DEPTH = 1000, 4


CALLS: list[bytes] = []


@pytest.fixture
def client() -> TestClient:
    """An app that echoes the body it received, behind the guard; CALLS holds what it got."""
    calls = CALLS
    calls.clear()

    async def echo(request: Request) -> Response:
        body = await request.body()
        calls.append(body)
        return Response(body, media_type="application/octet-stream")

    app = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])
    return TestClient(BodyLimits(app, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH))


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert CALLS == []  # the app never saw the request


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[[[[]]]]", False),
        (b"[[[[[]]]]]", True),
        (b'{"a": {"b": {"c": {"d": 1}}}}', False),
        (b'{"a": {"b": {"c": {"d": {"e": 1}}}}}', True),
        (b'["[[[[[[[[", "{{{{{{{{"]', False),  # brackets in strings do not nest
        (b'["\\"[[[[[[[["]', False),  # nor after an escaped quote
        (b'["\\\\", [[[[1]]]]]', True),  # an escaped backslash ends before the quote
        (b"[]" * 1000, False),  # wide is not deep
        (b'"' + b"[" * 100, False),  # an unterminated string runs to the end
        (b"[" * 100_000, True),
    ],
)
def test_json_depth_is_counted_outside_strings(body: bytes, too_deep: bool) -> None:
    assert json_depth_exceeds(body, MAX_DEPTH) is too_deep


def test_depth_scan_stays_linear_on_a_pathological_string() -> None:
    """Many escaped quotes and no closing one: a backtracking pattern would take hours."""
    assert json_depth_exceeds(b'"\\"' * 300_000 + b"[" * 10, MAX_DEPTH) is False


def test_a_body_over_the_size_limit_is_payload_too_large(client: TestClient) -> None:
    refused(client.post("/", content=b"1" * (MAX_BYTES + 1)), 413, "payload_too_large")


def test_a_body_streamed_without_a_length_is_cut_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"1" * 200

    response = client.post("/", content=chunks())
    refused(response, 413, "payload_too_large")


def test_json_nested_beyond_the_limit_is_a_validation_error(client: TestClient) -> None:
    response = client.post("/", content=b"[" * 5 + b"]" * 5, headers={"Content-Type": "application/json"})
    refused(response, 422, "validation_error")


def test_an_accepted_body_reaches_the_app_unchanged(client: TestClient) -> None:
    body = b'{"a": [[["x"]]], "b": "' + b"y" * 900 + b'"}'
    response = client.post("/", content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.content) == (200, body)


def test_a_deep_body_that_is_not_json_is_left_to_the_app(client: TestClient) -> None:
    response = client.post("/", content=b"[" * 10, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200


def test_requests_without_a_body_pass_untouched(client: TestClient) -> None:
    assert client.get("/").status_code == 200


def test_the_recursion_limit_a_library_raised_is_restored() -> None:
    before = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(100_000)  # what py_ecc does at import
        restore_recursion_limit()
        assert sys.getrecursionlimit() == RECURSION_LIMIT
    finally:
        sys.setrecursionlimit(before)
