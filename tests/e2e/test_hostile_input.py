"""Hostile requests against a real `ledger serve` process (SPEC 5, amendments: limits; "no
request can stop the server"): each gets a problem+json 4xx, and the server still answers.

Before the limits, a body of JSON nested 100,000 levels deep (or a 20 MB number) crashed the
process in the JSON parser, before authentication: the chain libraries had raised the
recursion limit to 100,000.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import assert_problem
from tests.e2e.served import Served, create_key, ledger_env, ledger_serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    """One `ledger serve` on a SQLite file for the module, and an admin key."""
    where = tmp_path_factory.mktemp("hostile")
    env = ledger_env(f"sqlite:///{where}/ledger.sqlite3")
    key = create_key(env, "admin", where)
    with ledger_serve(env, where) as running:
        yield running, key


def get(served: Served, path: str, key: str) -> httpx.Response:
    """A GET with the key, patient with a busy server (httpx's own bound is 5 s)."""
    return httpx.get(f"{served.base}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def still_serving(served: Served, key: str) -> None:
    assert served.alive(), served.output()
    assert httpx.get(f"{served.base}/healthz", timeout=30).status_code == 200
    listed = get(served, "/v1/audit/verify", key)
    assert listed.status_code == 200, listed.text


def unharmed(served: Served, key: str) -> None:
    """Still serving, and nothing was written: the only event is the admin key's creation."""
    still_serving(served, key)
    verified = get(served, "/v1/audit/verify", key)
    assert verified.json()["events_checked"] == 1
    events = get(served, "/v1/audit/events", key)
    assert [e["type"] for e in events.json()["events"]] == ["ApiKey.Created"]


def post_asset(served: Served, body: bytes, key: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{served.base}/v1/assets", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("authenticated", [False, True])
def test_json_nested_100000_deep_is_rejected_as_validation_error(
    served: tuple[Served, str], authenticated: bool
) -> None:
    server, key = served
    body = b"[" * 100_000 + b"]" * 100_000
    assert_problem(post_asset(server, body, key if authenticated else None), 422, "validation_error")
    unharmed(server, key)


def test_a_body_over_the_limit_is_refused_as_payload_too_large_before_it_is_read(
    served: tuple[Served, str],
) -> None:
    """A 20 MB JSON number: the declared length alone is refused (the client need not send it)."""
    server, key = served
    size = 20_000_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/assets HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {size}\r\n\r\n".encode()
            + b"1" * 65_536
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65_536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"application/problem+json" in head
    assert b'"code":"payload_too_large"' in body
    unharmed(server, key)


def test_a_number_of_a_million_digits_within_the_size_limit_is_a_validation_error(
    served: tuple[Served, str],
) -> None:
    server, key = served
    body = b'{"asset_id": "X", "unit_price": ' + b"7" * 1_000_000 + b"}"
    assert_problem(post_asset(server, body, key), 422, "validation_error")
    unharmed(server, key)


@pytest.mark.parametrize(
    "last_event_id",
    [
        "²".encode("latin-1"),  # a digit to str.isdigit, not to int()
        "²".encode(),
        b"9" * 5_000,  # beyond int()'s digit limit
        b"99999999999999999999999",  # beyond any position (and a BIGINT)
        b"-1",
        b"1e3",
    ],
)
def test_stream_refuses_a_bad_last_event_id_before_the_stream_starts(
    served: tuple[Served, str], last_event_id: bytes
) -> None:
    server, key = served
    headers = [(b"Authorization", f"Bearer {key}".encode()), (b"Last-Event-ID", last_event_id)]
    with httpx.stream("GET", f"{server.base}/v1/stream", headers=headers, timeout=30) as response:
        response.read()
    assert_problem(response, 422, "validation_error")
    still_serving(server, key)


def test_stream_resumes_from_a_valid_last_event_id(served: tuple[Served, str]) -> None:
    server, key = served
    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": "4611686018427387904"}  # 2**62
    with httpx.stream("GET", f"{server.base}/v1/stream", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
    still_serving(server, key)
