"""Reads the configuration and wires the ledger; the only place that does."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from adapters.api.app import create_app
from adapters.api.common import Services
from adapters.api.keys import KeyStore
from adapters.api.limits import restore_recursion_limit
from adapters.api.metrics import Metrics
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import TrexClient
from ledger.application import LedgerApplication
from ledger.config import Settings, store_env
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for


def settings() -> Settings:
    return Settings()


def build_application(config: Settings | None = None) -> LedgerApplication:
    """The ledger on the configured event store (tables are created if missing)."""
    config = config or settings()
    return LedgerApplication(store_env(config.database_url))


def read_engine(config: Settings | None = None, migrate: bool = True) -> Engine:
    """The read-model database, brought to the newest schema by its migrations."""
    config = config or settings()
    engine = engine_for(config.read_url)
    if migrate:
        upgrade(engine)
    return engine


def build_runner(app: LedgerApplication, config: Settings | None = None) -> ProjectionRunner:
    return ProjectionRunner(app, read_engine(config))


def build_services(config: Settings | None = None) -> Services:
    """Everything the HTTP API needs, on the configured stores."""
    config = config or settings()
    ledger = build_application(config)
    runner = build_runner(ledger, config)
    return Services(ledger, runner, KeyStore(runner.engine), Metrics())


def build_chain(
    app: LedgerApplication, runner: ProjectionRunner, config: Settings | None = None
) -> ChainService | None:
    """The chain adapter on `LEDGER_CHAIN_RPC_URL` (None when unset: the adapter is off).
    Without `LEDGER_CHAIN_AGENT_KEY` it mirrors and reconciles but sends nothing."""
    config = config or settings()
    if not config.chain_rpc_url:
        return None
    client = TrexClient(config.chain_rpc_url, config.chain_agent_key) if config.chain_agent_key else None
    return ChainService(app, runner, Rpc(config.chain_rpc_url), client, config.chain_confirmations)


def build_api(config: Settings | None = None) -> FastAPI:
    """The HTTP API of one `ledger serve --workers N` worker process (uvicorn's app factory).
    The projection runner and the in-process chain jobs run in the supervising process."""
    restore_recursion_limit()
    config = config or settings()
    return api_for(build_services(config), config)


def api_for(services: Services, config: Settings) -> FastAPI:
    """The HTTP API on `services`, with a chain adapter of its own (a runner serves one thread)."""
    api = create_app(services, config)
    api.state.chain = build_chain(services.ledger, build_runner(services.ledger, config), config)
    return api
