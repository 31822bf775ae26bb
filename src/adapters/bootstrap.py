"""Reads the configuration and wires the ledger; the only place that does."""

from __future__ import annotations

import os

from dotenv import dotenv_values
from sqlalchemy import Engine

from adapters.api.common import Services
from adapters.api.keys import KeyStore
from adapters.api.metrics import Metrics
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import TrexClient
from ledger.application import LedgerApplication
from ledger.config import Settings, known_variables, store_env
from ledger.environment import check_library_environment, unknown_ledger_variables
from projections.migrate import upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for


def settings() -> Settings:
    return Settings()


def environment_report(config: Settings) -> list[str]:
    """Refuses (`ConfigurationError`) an environment (or `.env` file) that would override a
    setting of the event store the ledger pins; notes what it ignores, and every unknown
    `LEDGER_*` variable (a typo must not leave a default silently in place)."""
    environ = {k: v for k, v in dotenv_values(".env").items() if v is not None} | dict(os.environ)
    notes = check_library_environment(environ, store_env(config.database_url))
    notes += [
        f"{name} is not a ledger setting (a typo?); it is ignored"
        for name in unknown_ledger_variables(environ, known_variables())
    ]
    return notes


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
