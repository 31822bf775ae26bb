"""GET /v1/stream: Server-Sent Events of committed events, live and resumable (SPEC 5).

Every read loop is bounded by a count and a deadline; the heartbeat is shortened so that an
idle stream still yields a line to look at the clock on, and closes quickly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from adapters.api.routers import audit
from tests.e2e.conftest import ASSET_ID, Api

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "HEARTBEAT_SECONDS", 0.1)


class Sse:
    """One connection to the stream; its lines can be read in several goes."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()


def read_events(sse: Sse, want: int, *, until_idle: bool = False) -> list[dict[str, Any]]:
    """Up to `want` events (id, event, data), or fewer once TIMEOUT passes; with `until_idle`,
    also stops at the first keep-alive comment (nothing more to send)."""
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    deadline = time.monotonic() + TIMEOUT
    for line in sse.lines:
        if line.startswith(":"):
            if until_idle:
                break
        elif line == "":
            if "id" in fields:
                events.append(
                    {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
                )
            fields = {}
            if len(events) >= want:
                break
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if time.monotonic() > deadline:
            break
    return events


def wait_idle(sse: Sse) -> list[dict[str, Any]]:
    """Reads what the stream has to send until it goes quiet (a keep-alive)."""
    return read_events(sse, 10_000, until_idle=True)


def audit_events(api: Api, after: int) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.get("/v1/audit/events", after=after, limit=1000).json()["events"]
    return listed


@contextmanager
def stream(api: Api, **params: Any) -> Iterator[Sse]:
    headers = api.headers("auditor")
    headers.update(params.pop("headers", {}))
    with api.client.stream("GET", "/v1/stream", headers=headers, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Sse(response)


def test_events_committed_while_connected_arrive_in_order(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    api.onboard("alice")
    start = api.head()
    with stream(api, after=start) as response:
        assert wait_idle(response) == []  # connected, nothing after `start` yet
        api.invest("alice", ASSET_ID, 300_000)
        api.ok(f"/v1/assets/{ASSET_ID}/pause")
        api.ok(f"/v1/assets/{ASSET_ID}/unpause")
        expected = audit_events(api, start)
        assert len(expected) == 4
        received = read_events(response, len(expected))
    assert [e["id"] for e in received] == [e["position"] for e in expected]
    assert [e["data"] for e in received] == expected
    assert [e["event"] for e in received] == [e["type"] for e in expected]
    assert [e["event"] for e in received][-2:] == ["Asset.Paused", "Asset.Unpaused"]


def test_the_whole_history_streams_from_the_start(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    api.onboard("alice")
    with stream(api) as response:
        received = wait_idle(response)
    assert [e["data"] for e in received] == audit_events(api, 0)


@pytest.mark.parametrize("resume_with", ["after", "last-event-id"])
def test_reconnecting_resumes_without_gaps_or_duplicates(lite_api: Api, resume_with: str) -> None:
    api = lite_api
    api.open_asset()
    for investor_id in ("alice", "bob", "carol"):
        api.onboard(investor_id)
    with stream(api, after=0) as response:
        first = read_events(response, 5)
    assert len(first) == 5
    api.holding(ASSET_ID, "alice", 3)  # committed while disconnected
    last = first[-1]["id"]
    params: dict[str, Any] = (
        {"after": last} if resume_with == "after" else {"headers": {"Last-Event-ID": str(last)}}
    )
    with stream(api, **params) as response:
        rest = wait_idle(response)
        api.ok(f"/v1/assets/{ASSET_ID}/pause")  # committed after reconnecting
        rest += read_events(response, 1)
    everything = audit_events(api, 0)
    assert [e["id"] for e in first + rest] == [e["position"] for e in everything]
    assert [e["data"] for e in first + rest] == everything


def test_after_wins_over_last_event_id(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    with stream(api, after=2, headers={"Last-Event-ID": "1"}) as response:
        received = wait_idle(response)
    assert [e["id"] for e in received] == [e["position"] for e in audit_events(api, 2)]


def test_idle_stream_clients_do_not_stall_other_requests(
    lite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 live, idle stream clients; then /healthz must still answer within a second.

    Regression: the stream's generator slept inside a worker thread of the pool every sync
    endpoint shares, so 40 idle clients (AnyIO's default limit) stalled the whole API.

    No heartbeat comes during the test: the streams are woken (and the test ends) by events
    appended straight through the ledger, which needs no worker thread of the API.
    """
    api = lite_api
    monkeypatch.setattr(audit, "HEARTBEAT_SECONDS", 600.0)
    api.open_asset()
    clients = 40  # AnyIO's default thread limit
    connected = threading.Semaphore(0)
    stop = threading.Event()

    def listen() -> None:
        with stream(api) as sse:
            for line in sse.lines:
                if line == "":
                    connected.release()
                    break
            for _ in sse.lines:  # a live client keeps reading
                if stop.is_set():
                    break

    readers = [threading.Thread(target=listen, daemon=True) for _ in range(clients)]
    for reader in readers:
        reader.start()
    answered = threading.Event()

    def probe() -> None:
        if api.client.get("/healthz").status_code == 200:
            answered.set()

    prober = threading.Thread(target=probe, daemon=True)
    try:
        for _ in range(clients):
            assert connected.acquire(timeout=TIMEOUT)
        time.sleep(0.3)  # every stream has sent the history and waits for the next event
        prober.start()
        in_time = answered.wait(timeout=1.0)
    finally:
        stop.set()
        deadline = time.monotonic() + 3 * TIMEOUT
        for round_ in range(1000):  # each event wakes every stream: readers stop, streams close
            if not any(r.is_alive() for r in readers) or time.monotonic() > deadline:
                break
            ledger = api.services.ledger
            (ledger.pause_asset if round_ % 2 == 0 else ledger.unpause_asset)(ASSET_ID)
            time.sleep(0.1)
        prober.join(timeout=TIMEOUT)
    assert not any(r.is_alive() for r in readers)
    assert in_time, f"/healthz did not answer within 1 s while {clients} stream clients were idle"
