"""/healthz, /readyz (store reachable, projection lag) and /metrics (Prometheus)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.common import Services
from adapters.api.keys import KeyStore
from adapters.api.metrics import Metrics
from adapters.api.routers import health
from ledger.application import LedgerApplication
from ledger.config import store_env
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for
from tests.conftest import FakeClock
from tests.e2e.conftest import ASSET_ID, Api, wait_until
from tests.support import onboard


def test_healthz(lite_api: Api) -> None:
    response = lite_api.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_reports_the_head_and_each_views_lag(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    assert wait_until(lambda: set(api.client.get("/readyz").json()["lag"].values()) == {0})
    response = api.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["head_position"]) == ("ready", api.head())
    assert set(body["lag"]) == {
        "investors",
        "assets",
        "holdings",
        "distributions",
        "proposals",
        "chain",
        "analytics",
        "statements",
    }


def test_readyz_is_503_when_the_read_models_lag_too_far(
    lite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite_api.open_asset()
    monkeypatch.setattr(health, "READY_LAG", -1)
    response = lite_api.client.get("/readyz")
    assert (response.status_code, response.json()["status"]) == (503, "lagging")


def test_readyz_is_503_when_the_store_is_unreachable(lite_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> int:
        raise ConnectionError("store down")

    monkeypatch.setattr(lite_api.services.ledger.admin, "head_position", unreachable)
    response = lite_api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "store_unavailable"}  # a stable reason, no exception text


def test_readyz_is_503_once_the_in_process_runner_has_stopped(lite_api: Api) -> None:
    lite_api.open_asset()
    lite_api.services.runner.stop()
    assert wait_until(lambda: lite_api.services.runner.running is False)
    response = lite_api.client.get("/readyz")
    assert (response.status_code, response.json()["status"]) == (503, "projector_not_running")


def test_readyz_is_503_while_a_batch_keeps_failing_and_says_so_without_the_error_text(
    lite_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = lite_api
    api.open_asset()
    assert wait_until(lambda: api.client.get("/readyz").status_code == 200)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.services.runner, "_project", broken)
    api.onboard("alice")
    assert wait_until(lambda: api.services.runner.last_error is not None)
    response = api.client.get("/readyz")
    assert (response.status_code, response.json()["status"]) == (503, "projection_failing")
    assert "secret" not in response.text
    monkeypatch.undo()  # the runner retries the batch and recovers by itself
    assert wait_until(lambda: api.client.get("/readyz").status_code == 200)


def test_readyz_is_503_while_the_read_models_stand_behind_the_head(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No runner in this process (`serve --no-projector`) and none elsewhere: the lag stays."""
    url = f"sqlite:///{tmp_path}/ledger.sqlite3"
    ledger = LedgerApplication(store_env(url), clock=clock)
    engine = engine_for(url)
    upgrade(engine)
    services = Services(ledger, ProjectionRunner(ledger, engine), KeyStore(engine), Metrics())
    try:
        with TestClient(create_app(services)) as client:
            assert client.get("/readyz").status_code == 200
            onboard(ledger, "alice")
            monkeypatch.setattr(health, "STALL_SECONDS", 0.0)
            response = client.get("/readyz")
            assert (response.status_code, response.json()["status"]) == (503, "projection_stalled")
            services.runner.catch_up()
            assert client.get("/readyz").status_code == 200
    finally:
        ledger.close()
        engine.dispose()


def test_metrics_count_requests_commands_and_lag(lite_api: Api) -> None:
    api = lite_api
    api.open_asset()
    api.post(f"/v1/assets/{ASSET_ID}/unpause")  # rejected: invalid_state
    api.post("/v1/investments", {"amount": 1.5})  # validation_error
    api.read(f"/v1/assets/{ASSET_ID}")  # waits for the runner (min_position): a 200, never a racing 404
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE ledger_http_request_seconds histogram" in text
    route = re.escape('method="GET",route="/v1/assets/{asset_id}",status="200"')
    assert re.search(rf"ledger_http_request_seconds_count\{{{route}\}} 1\.0", text)
    assert "# TYPE ledger_commands_total counter" in text
    assert 'ledger_commands_total{outcome="ok",route="/v1/assets"} 1.0' in text
    assert 'ledger_commands_total{outcome="invalid_state",route="/v1/assets/{asset_id}/unpause"} 1.0' in text
    assert 'ledger_commands_total{outcome="validation_error",route="/v1/investments"} 1.0' in text
    assert 'ledger_projection_lag_events{view="holdings"}' in text
    assert api.key("admin") not in text


def test_readyz_is_503_naming_the_check_when_a_guard_trigger_is_dropped(lite_api: Api) -> None:
    """Least privilege: the store's self-check runs at start and again on each readiness probe."""
    lite_api.open_asset()
    recorder = lite_api.services.ledger.admin.sql.recorder
    with recorder.datastore.transaction(commit=True) as c:
        c.execute("DROP TRIGGER ledger_events_refuse_delete")
    response = lite_api.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "store_check_failed" and "ledger_events_refuse_delete" in body["detail"]
