"""SPEC 5 (second edition): `X-Request-ID` is accepted and echoed (validated, else made), and
each request writes one JSON line on stderr with its key id, never the secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from projections.runner import ProjectionRunner
from tests.e2e.conftest import ASSET_ID, Api, assert_problem

FIELDS = {"time", "request_id", "key_id", "method", "path", "status", "duration_us", "position"}


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = capsys.readouterr().err.splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def key_id(token: str) -> str:
    return token.split("_", 2)[1]


def test_each_request_writes_one_json_line_with_its_key_id_and_never_a_secret(
    lite_api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    api = lite_api
    api.open_asset()
    api.key("auditor")
    capsys.readouterr()
    created = api.post(f"/v1/assets/{ASSET_ID}/pause", idem="log-1")
    read = api.get(f"/v1/assets/{ASSET_ID}", who="auditor")
    unauthorised = api.get(f"/v1/assets/{ASSET_ID}", who=None)
    missing = api.client.get("/v1/no-such-thing", headers=api.headers("admin"))
    invalid = api.post("/v1/assets", {"asset_id": "bad id"})
    responses = [created, read, unauthorised, missing, invalid]
    lines = log_lines(capsys)
    assert len(lines) == len(responses)
    for line, response in zip(lines, responses, strict=True):
        assert set(line) >= FIELDS
        assert line["status"] == response.status_code
        assert line["request_id"] == response.headers["x-request-id"]
        assert isinstance(line["duration_us"], int)
        assert line["time"].endswith("Z")
    assert [line["method"] for line in lines] == ["POST", "GET", "GET", "GET", "POST"]
    assert lines[0]["path"] == "/v1/assets/{asset_id}/pause"  # the template, not the path
    assert lines[0]["key_id"] == key_id(api.keys["admin"])
    assert lines[0]["position"] == created.json()["position"]
    assert (lines[1]["key_id"], lines[1]["position"]) == (key_id(api.keys["auditor"]), None)
    assert lines[2]["key_id"] is None
    assert lines[3]["path"] == "unmatched"
    text = json.dumps(lines)
    for token in api.keys.values():
        assert token not in text
        assert token.split("_", 2)[2] not in text


def test_a_valid_request_id_is_echoed_and_an_invalid_one_replaced(
    lite_api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    api = lite_api
    headers = api.headers("admin")
    kept = api.client.get("/healthz", headers={**headers, "X-Request-ID": "trace-0123:abc"})
    assert kept.headers["x-request-id"] == "trace-0123:abc"
    for bad in ("x" * 129, "has space", "tab\there", ""):
        response = api.client.get("/healthz", headers={**headers, "X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32
    fresh = api.client.get("/healthz")
    assert len(fresh.headers["x-request-id"]) == 32
    ids = [line["request_id"] for line in log_lines(capsys)]
    assert ids[0] == "trace-0123:abc"
    assert len(set(ids)) == len(ids)


def test_a_problem_response_carries_its_request_id_header(lite_api: Api) -> None:
    response = lite_api.client.post(
        f"/v1/assets/{ASSET_ID}/approve",
        headers={**lite_api.headers("admin"), "X-Request-ID": "req-42"},
    )
    assert_problem(response, 404, "not_found")
    assert response.headers["x-request-id"] == "req-42"


def test_a_commands_events_record_the_callers_key_role_investor_and_request_id(api: Api) -> None:
    api.open_asset()
    api.onboard("alice")
    api.holding(ASSET_ID, "alice", 10)
    api.onboard("bob")
    head = api.head()
    transfer = {"asset_id": ASSET_ID, "from_investor_id": "alice", "to_investor_id": "bob", "quantity": 1}
    headers = {**api.headers("investor:alice"), "X-Request-ID": "transfer-77"}
    own_transfer = api.client.post("/v1/transfers", json=transfer, headers=headers)
    assert own_transfer.status_code == 201
    forced = api.post("/v1/transfers", {**transfer, "forced": True})
    events = api.get("/v1/audit/events", after=head, limit=100).json()["events"]
    alice = {
        "principal": f"key:{key_id(api.keys['investor:alice'])}",
        "role": "investor",
        "investor_id": "alice",
        "request_id": "transfer-77",
    }
    own = [e for e in events if e["position"] <= own_transfer.json()["position"]]
    assert own and all(e["actor"] == alice for e in own)
    by_admin = events[-1]["actor"]
    assert (by_admin["principal"], by_admin["role"]) == (f"key:{key_id(api.keys['admin'])}", "admin")
    assert by_admin["request_id"] == forced.headers["x-request-id"]


def test_an_unexpected_error_answers_a_stable_problem_and_logs_its_kind_under_the_request_id(
    lite_api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = lite_api
    api.key("admin")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("module path /srv/internal.py line 9")

    monkeypatch.setattr(api.services.ledger.admin, "verify", broken)
    capsys.readouterr()
    response = api.client.get("/v1/audit/verify", headers={**api.headers("admin"), "X-Request-ID": "boom-1"})
    body = assert_problem(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "boom-1"
    assert "internal.py" not in response.text and body["detail"] == "the request could not be completed"
    captured = capsys.readouterr().err
    line = next(json.loads(x) for x in captured.splitlines() if x.startswith("{"))
    assert (line["request_id"], line["status"], line["error"]) == ("boom-1", 500, "RuntimeError")


def test_an_unreachable_chain_node_is_a_stable_problem_without_its_address(
    lite_api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    api = lite_api
    api.open_asset()
    token = {"chain_id": 31337, "token_address": "0x" + "7" * 40, "identity_registry": "0x" + "8" * 40}
    api.ok(f"/v1/assets/{ASSET_ID}/token", token)
    ledger = api.services.ledger
    runner = ProjectionRunner(ledger, api.services.runner.engine)
    node = Rpc("http://operator:node-secret@127.0.0.1:9/", timeout=5)
    api.client.app.state.chain = ChainService(ledger, runner, node, None, 1)  # type: ignore[attr-defined]
    head = api.head()
    response = api.post("/v1/reconciliations", {"asset_id": ASSET_ID})
    assert_problem(response, 503, "chain_unavailable")
    assert "node-secret" not in response.text and "127.0.0.1" not in response.text
    assert api.head() == head
