"""The HTTP API end to end: the FastAPI app on a real store, a live projection runner, API keys.

`api` runs on SQLite and on PostgreSQL (the `store_url` fixture); `lite_api` on SQLite only.
The event store and the read models share one URL (a SQLite file or a PostgreSQL schema).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters.api import common
from adapters.api.app import create_app
from adapters.api.common import Services
from adapters.api.keys import KeyStore
from adapters.api.metrics import Metrics
from ledger.application import LedgerApplication
from ledger.config import store_env
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for
from tests.conftest import FakeClock
from tests.support import ASSET_TERMS, wallet_for

ASSET_ID = str(ASSET_TERMS["asset_id"])
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"
PROBLEM = "application/problem+json"
PATIENCE = 60.0  # seconds a test waits for something that must happen (it goes on as soon as it does)


@dataclass
class Api:
    """A test client of the API with its services, clock and keys, plus scenario builders."""

    client: TestClient
    services: Services
    clock: FakeClock
    url: str
    keys: dict[str, str] = field(default_factory=dict)

    # ----- authentication -----

    def key(self, who: str) -> str:
        """`admin`, `auditor` or `investor:<id>` (made on first use)."""
        if who not in self.keys:
            role, _, investor_id = who.partition(":")
            self.keys[who] = self.services.keys.create(role, investor_id or None)
        return self.keys[who]

    def headers(self, who: str | None, idem: str | None = None) -> dict[str, str]:
        headers = {} if who is None else {"Authorization": f"Bearer {self.key(who)}"}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        return headers

    # ----- requests -----

    def post(
        self, path: str, body: Any = None, *, who: str | None = "admin", idem: str | None = None
    ) -> httpx.Response:
        if body is None:
            return self.client.post(path, headers=self.headers(who, idem))
        return self.client.post(path, json=body, headers=self.headers(who, idem))

    def get(self, path: str, *, who: str | None = "admin", **params: Any) -> httpx.Response:
        if not params:  # an empty `params` would drop a query string written into `path`
            return self.client.get(path, headers=self.headers(who))
        return self.client.get(path, headers=self.headers(who), params=params)

    def ok(self, path: str, body: Any = None, *, status: int | None = None, **kw: Any) -> dict[str, Any]:
        """A command that must succeed; returns its body."""
        response = self.post(path, body, **kw)
        expected = status or (201 if _creates(path) else 200)
        assert response.status_code == expected, (path, response.status_code, response.text)
        payload: dict[str, Any] = response.json()
        return payload

    def read(self, path: str, min_position: int | None = None, **params: Any) -> dict[str, Any]:
        """A query that must succeed, by default after the read models have caught up to the head."""
        position = self.head() if min_position is None else min_position
        response = self.get(path, min_position=position, **params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        payload: dict[str, Any] = response.json()
        return payload

    def head(self) -> int:
        return self.services.ledger.admin.head_position()

    # ----- scenario builders over HTTP -----

    def register_asset(self, **overrides: Any) -> str:
        terms = {**ASSET_TERMS, **overrides}
        self.ok("/v1/assets", terms)
        return str(terms["asset_id"])

    def open_asset(self, **overrides: Any) -> str:
        asset_id = self.register_asset(**overrides)
        self.ok(f"/v1/assets/{asset_id}/approve")
        self.ok(f"/v1/assets/{asset_id}/offering", {"open": True})
        return asset_id

    def onboard(
        self, investor_id: str, country: str = "ID", accredited: bool = False, kyc: str = "approved"
    ) -> str:
        self.ok(
            "/v1/investors",
            {
                "investor_id": investor_id,
                "country": country,
                "wallet": wallet_for(investor_id),
                "accredited": accredited,
            },
        )
        if kyc != "pending":
            self.ok(f"/v1/investors/{investor_id}/kyc", {"status": kyc})
        return investor_id

    def invest(self, investor_id: str, asset_id: str, amount: int | str) -> dict[str, Any]:
        return self.ok(
            "/v1/investments", {"investor_id": investor_id, "asset_id": asset_id, "amount": amount}
        )

    def holding(self, asset_id: str, investor_id: str, quantity: int, unit_price: int = 100_000) -> str:
        """A settled investment of `quantity` whole tokens of a 0-decimal asset."""
        investment_id = str(self.invest(investor_id, asset_id, quantity * unit_price)["investment_id"])
        self.ok(f"/v1/investments/{investment_id}/confirm-payment", {"payment_ref": f"pay-{investment_id}"})
        return investment_id

    def events_checked(self) -> int:
        response = self.get("/v1/audit/verify")
        assert response.status_code == 200
        assert response.json()["ok"] is True
        return int(response.json()["events_checked"])


def _creates(path: str) -> bool:
    return path.rstrip("/") in {
        "/v1/assets",
        "/v1/investors",
        "/v1/investments",
        "/v1/transfers",
        "/v1/redemptions",
        "/v1/distributions",
        "/v1/proposals",
        "/v1/reconciliations",
    } or path.endswith("/votes")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A problem+json body with every field of SPEC 5 and the expected status and code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    assert body["status"] == status
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and isinstance(body["title"], str)
    return body


class _DocumentOnly:
    """Building the app (and its document) touches nothing of the services but the metrics."""

    metrics = Metrics()


def app_document() -> dict[str, Any]:
    """The app's OpenAPI document, built without a store."""
    return create_app(cast(Services, _DocumentOnly())).openapi()


@contextmanager
def running_api(url: str, clock: FakeClock) -> Iterator[Api]:
    """The API on `url` with a projection runner thread; everything stopped and closed afterwards."""
    ledger = LedgerApplication(store_env(url), clock=clock)
    engine = engine_for(url)
    upgrade(engine)
    runner = ProjectionRunner(ledger, engine)
    services = Services(ledger, runner, KeyStore(engine), Metrics())
    thread = threading.Thread(
        target=runner.run_forever, args=(url,), kwargs={"idle": 0.02}, name="projections", daemon=True
    )
    thread.start()
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            yield Api(client, services, clock, url)
    finally:
        runner.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the projection runner did not stop"
        ledger.close()
        engine.dispose()


@pytest.fixture(autouse=True)
def _patient_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read with `min_position` waits up to 60 s for the runner thread instead of 5 s: on a
    loaded machine the thread may get little CPU, and a read that must see a write is no place
    for a deadline (it returns as soon as the read models are there; tests of the 503 itself
    set a short wait of their own)."""
    monkeypatch.setattr(common, "WAIT_SECONDS", PATIENCE)


@pytest.fixture
def api(store_url: str, clock: FakeClock) -> Iterator[Api]:
    """The API on SQLite and on PostgreSQL."""
    with running_api(store_url, clock) as running:
        yield running


@pytest.fixture
def lite_api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    """The API on a SQLite file only."""
    with running_api(f"sqlite:///{tmp_path}/ledger.sqlite3", clock) as running:
        yield running


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, str]]]:
    """A SQLite ledger, shared by a module, where every rule of SPEC 4.3-4.5 can be broken."""
    url = f"sqlite:///{tmp_path_factory.mktemp('world')}/ledger.sqlite3"
    with running_api(url, FakeClock()) as running:
        yield running, build_world(running)


def build_world(api: Api) -> dict[str, str]:
    """Assets in every state and investors in every situation (see the comments); returns the ids.

    TOLL-JKT-01: open, supply 300, max 3 holders, max balance 150, ID and SG only;
    alice 140, bob 50, carol 10 (address-frozen); dave eligible with nothing; erin KYC pending;
    frank from US. A cancelled and a settled investment, a fully paid distribution, an open
    proposal alice voted on, a closed one and one past its deadline.
    """
    main = api.open_asset(
        authorized_supply=300, max_holders=3, max_balance=150, allowed_countries=["ID", "SG"]
    )
    for investor_id, country in (("alice", "ID"), ("bob", "SG"), ("carol", "ID"), ("dave", "ID")):
        api.onboard(investor_id, country)
    api.onboard("erin", kyc="pending")
    api.onboard("frank", "US")
    ids = {"main": main, "settled": api.holding(main, "alice", 140)}
    api.holding(main, "bob", 50)
    api.holding(main, "carol", 10)
    ids["cancelled"] = str(api.invest("alice", main, 100_000)["investment_id"])
    api.ok(f"/v1/investments/{ids['cancelled']}/cancel")
    api.ok(f"/v1/assets/{main}/holders/carol/freeze")
    paid = str(api.ok("/v1/distributions", {"asset_id": main, "amount": 1000})["distribution_id"])
    api.ok(f"/v1/distributions/{paid}/pay")
    ids["paid_distribution"] = paid

    def proposal(**extra: Any) -> str:
        body = {
            "asset_id": main,
            "title": "Renew the operator?",
            "options": ["yes", "no"],
            "quorum_bps": 5000,
        }
        return str(api.ok("/v1/proposals", {**body, **extra})["proposal_id"])

    ids["open_proposal"] = proposal()
    api.ok(f"/v1/proposals/{ids['open_proposal']}/votes", {"investor_id": "alice", "option": "yes"})
    ids["closed_proposal"] = proposal()
    api.ok(f"/v1/proposals/{ids['closed_proposal']}/close")
    deadline = (api.clock.now + timedelta(seconds=60)).isoformat()
    ids["expired_proposal"] = proposal(closes_at=deadline)

    api.register_asset(asset_id="DRAFT-01")  # draft
    api.register_asset(asset_id="CLOSED-01")  # approved, offering never opened
    api.ok("/v1/assets/CLOSED-01/approve")
    api.open_asset(asset_id="PRICY-01", unit_price=1_000_000, min_investment=1)  # 1 token = 1,000,000
    api.open_asset(asset_id="ACCR-01", accredited_only=True)
    api.open_asset(asset_id="PAUSED-01")  # alice holds 5, is address-frozen, and the asset is paused
    api.holding("PAUSED-01", "alice", 5)
    api.ok("/v1/assets/PAUSED-01/holders/alice/freeze")
    api.ok("/v1/assets/PAUSED-01/pause")
    api.open_asset(asset_id="LOCK-01", lockup_seconds=10**6)  # alice holds 5, locked up
    api.holding("LOCK-01", "alice", 5)
    api.clock.advance(120)  # past the deadline of expired_proposal, well within the lock-up
    return ids


def wait_until(predicate: Any, timeout: float = PATIENCE) -> bool:
    """Polls `predicate` until it holds (True) or `timeout` passes (False); the default bound is
    generous, for it only ends a test that failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
