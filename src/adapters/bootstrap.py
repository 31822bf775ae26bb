"""Reads the configuration and wires the ledger; the only place that does."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlencode, urlparse

from dotenv import dotenv_values
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
from ledger.config import Settings, known_variables, store_env
from ledger.environment import check_library_environment, ledger_settings, unknown_ledger_variables
from ledger.errors import ConfigurationError
from ledger.selfcheck import Check, missing_tables, refusal, store_checks, structure_checks
from projections.migrate import is_current, upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for


def settings() -> Settings:
    return Settings()


def environment_report(config: Settings) -> list[str]:
    """Refuses (`ConfigurationError`) an environment (or `.env` file) that would override a
    setting of the event store the ledger pins; notes what it ignores, and every unknown
    `LEDGER_*` variable (a typo must not leave a default silently in place)."""
    environ = {k: v for k, v in dotenv_values(".env").items() if v is not None} | dict(os.environ)
    ours = ledger_settings(LedgerApplication, store_env(config.database_url))
    notes = check_library_environment(environ, ours)
    notes += [
        f"{name} is not a ledger setting (a typo?); it is ignored"
        for name in unknown_ledger_variables(environ, known_variables())
    ]
    return notes


def build_application(
    config: Settings | None = None, *, create_tables: bool | None = None
) -> LedgerApplication:
    """The ledger on the configured event store. Tables are created if missing, unless an
    owner role is configured (`LEDGER_ADMIN_DATABASE_URL`): the runtime role may not."""
    config = config or settings()
    create = not config.admin_database_url if create_tables is None else create_tables
    return LedgerApplication(store_env(config.database_url, create_tables=create))


def two_roles(config: Settings) -> bool:
    return bool(config.admin_database_url)


def runtime_role(config: Settings) -> str:
    """The database role of LEDGER_DATABASE_URL: the one the service runs as."""
    return unquote(urlparse(config.database_url).username or "postgres")


def owner_settings(config: Settings) -> Settings:
    """The configuration `init`, migrations and replay run with: the owner role's URL for the
    store (and for the read models when they share its database), where one is configured.
    The owner's URL names the runtime URL's schema unless it names one itself."""
    if not config.admin_database_url:
        return config
    admin = config.admin_database_url
    schema = parse_qs(urlparse(config.database_url).query).get("schema")
    if schema and "schema" not in parse_qs(urlparse(admin).query):
        admin += ("&" if "?" in admin else "?") + urlencode({"schema": schema[0]})
    shared = config.read_database_url in (None, config.database_url)
    return config.model_copy(
        update={
            "database_url": admin,
            "read_database_url": None if shared else config.read_database_url,
            "admin_database_url": None,
        }
    )


def startup_check(app: LedgerApplication, config: Settings) -> list[Check]:
    """The store's self-check (`ledger.selfcheck`); `ConfigurationError` if it must not serve."""
    checks = store_checks(app.admin.sql.recorder, two_roles(config))
    reason = refusal(checks)
    if reason is not None:
        raise ConfigurationError(reason)
    return checks


def failing_before_hardening(config: Settings) -> list[Check]:
    """The self-check's findings on an existing store before `init` hardens it again (which
    puts the ledger's definitions back and digests them anew): what an operator should know
    it is about to replace. None for a store not created yet."""
    app = build_application(config, create_tables=False)
    try:
        recorder = app.admin.sql.recorder
        if missing_tables(recorder):
            return []  # new (or dropped, which creating refuses with its own message)
        return [check for check in structure_checks(recorder) if not check.ok]
    finally:
        app.close()


def read_engine(config: Settings | None = None, migrate: bool = True) -> Engine:
    """The read-model database, brought to the newest schema by its migrations; under two
    roles the runtime role only checks that the owner has migrated it (`ledger init`)."""
    config = config or settings()
    engine = engine_for(config.read_url)
    if migrate and two_roles(config) and owner_settings(config).read_url != config.read_url:
        if not is_current(engine):
            engine.dispose()
            raise ConfigurationError("the read models are not at the newest schema: run `ledger init`")
    elif migrate:
        upgrade(engine)
    return engine


def build_runner(app: LedgerApplication, config: Settings | None = None) -> ProjectionRunner:
    return ProjectionRunner(app, read_engine(config))


def build_services(config: Settings | None = None) -> Services:
    """Everything the HTTP API needs, on the configured stores; `ConfigurationError` if the
    store fails its self-check."""
    config = config or settings()
    ledger = build_application(config)
    try:
        startup_check(ledger, config)  # in every process that serves, however many there are
    except ConfigurationError:
        ledger.close()
        raise
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
    return ChainService(
        app, runner, Rpc(config.chain_rpc_url), client, config.chain_confirmations,
        config.anchor_address, config.anchor_from_block,
    )


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
