"""The portfolio GET's own read path (SPEC 8, api): on PostgreSQL it runs on the event loop through
plain psycopg, elsewhere (SQLite, or an app called from another event loop) in a worker thread;
every path answers the same body, byte for byte, as the generic read-model response."""

from __future__ import annotations

from fastapi.testclient import TestClient

from adapters.api import responses
from adapters.api.common import read_response
from projections.portfolio import portfolio_view
from tests.e2e.conftest import ASSET_ID, Api, assert_problem
from tests.e2e.test_api_queries import scenario


def _generic_body(api: Api, investor_id: str) -> bytes:
    """The body the generic `read_response` makes of the view read through SQLAlchemy."""
    with api.services.runner.engine.connect() as conn:
        view = portfolio_view(conn, investor_id)
    body = {"investor_id": investor_id, "positions": view.positions, "totals": view.totals}
    return read_response(body, view.as_of_position, responses.Portfolio).body


def test_the_event_loop_read_pool_is_open_on_postgresql_only(api: Api) -> None:
    assert (api.client.app.state.read_pool is not None) == api.url.startswith("postgresql")


def test_the_portfolio_body_is_the_generic_read_models(api: Api) -> None:
    ids = scenario(api)
    for investor_id in ("alice", "bob", "carol"):
        response = api.get(f"/v1/investors/{investor_id}/portfolio", min_position=ids["head"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == _generic_body(api, investor_id)
    assert api.get("/v1/investors/alice/portfolio").json()["positions"][0]["asset_id"] == ASSET_ID


def test_an_app_called_from_another_event_loop_reads_in_a_worker_thread(api: Api) -> None:
    ids = scenario(api)
    other = TestClient(api.client.app, raise_server_exceptions=False)  # a portal (loop) per request
    headers = api.headers("admin")
    path = "/v1/investors/carol/portfolio"
    response = other.get(path, headers=headers, params={"min_position": ids["head"]})
    assert response.status_code == 200
    assert response.content == _generic_body(api, "carol")
    assert_problem(other.get("/v1/investors/nobody/portfolio", headers=headers), 404, "not_found")
    assert_problem(other.get("/v1/investors/alice/portfolio"), 401, "unauthorized")
