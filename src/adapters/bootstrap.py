"""Reads the configuration and wires the ledger; the only place that does: the application
and its store, the projection runner, the API's services and the served API (uvicorn), the
chain adapter, the background jobs, the API keys' administration. The CLI, the API and the
worker only translate arguments and results."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlparse

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from dotenv import dotenv_values
from fastapi import FastAPI
from sqlalchemy import Engine

from adapters.api.accepting import serve_workers
from adapters.api.app import create_app
from adapters.api.keys import KeyAdmin, KeyStore
from adapters.api.limits import restore_recursion_limit
from adapters.api.metrics import Metrics
from adapters.api.nodelay import NoDelayHTTPProtocol
from adapters.chain.anchor import Anchor, AnchorPublisher, verify_anchored
from adapters.chain.anvil import DEV_KEYS
from adapters.chain.rpc import Rpc
from adapters.chain.service import ChainService
from adapters.chain.trex import TrexClient
from adapters.services import Services
from adapters.worker import PERIODS, Jobs, WorkerProcess, build_broker
from ledger.application import LedgerApplication
from ledger.config import Settings, known_variables, store_env
from ledger.environment import check_library_environment, ledger_settings, unknown_ledger_variables
from ledger.errors import ConfigurationError
from ledger.selfcheck import Check, missing_tables, refusal, store_checks, structure_checks
from ledger.transparency import HeadSigner, HeadVerification
from projections.investors import any_investor_id
from projections.migrate import is_current, upgrade
from projections.runner import ProjectionRunner
from projections.schema import engine_for, snapshot

GRACE_SECONDS = 4  # SIGTERM: requests in flight (and open event streams) get this long
# A worker process answers the supervisor's health pings only once it has imported this module
# again (spawned, it re-imports the `ledger` script: web3 and all); uvicorn's 5 s killed and
# restarted slow starters on a busy machine, for ever.
WORKER_START_SECONDS = 60


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


def checked_application(config: Settings) -> LedgerApplication:
    """The ledger of a process that serves or runs jobs, once the store has passed its
    self-check; closed and `ConfigurationError` if it fails."""
    ledger = build_application(config)
    try:
        startup_check(ledger, config)  # in every process that serves, however many there are
    except ConfigurationError:
        ledger.close()
        raise
    return ledger


def build_services(config: Settings | None = None) -> Services:
    """Everything the HTTP API needs, on the configured stores; `ConfigurationError` if the
    store fails its self-check."""
    config = config or settings()
    ledger = checked_application(config)
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
    return _chain_at(app, runner, config, config.chain_rpc_url, config.chain_agent_key)


def build_local_chain(
    app: LedgerApplication, runner: ProjectionRunner, config: Settings, node_url: str
) -> ChainService:
    """The chain adapter on a local development node (the demo's anvil): its first account is
    the agent; no anchor contract."""
    local = config.model_copy(update={"anchor_address": None, "anchor_from_block": 0})
    return _chain_at(app, runner, local, node_url, DEV_KEYS[0])


def _chain_at(
    app: LedgerApplication, runner: ProjectionRunner, config: Settings, url: str, agent_key: str | None
) -> ChainService:
    client = TrexClient(url, agent_key) if agent_key else None
    return ChainService(
        app, runner, Rpc(url), client, config.chain_confirmations,
        config.anchor_address, config.anchor_from_block,
    )


@contextmanager
def chain_service(app: LedgerApplication, config: Settings) -> Iterator[ChainService | None]:
    """The chain adapter on `app` with a projection runner of its own (None when the adapter
    is off); the runner's engine is disposed on leaving."""
    runner = build_runner(app, config)
    try:
        yield build_chain(app, runner, config)
    finally:
        runner.engine.dispose()


def chain_agent(config: Settings) -> tuple[TrexClient, Rpc] | None:
    """The agent's T-REX client and a reader on the configured chain (None without both
    `LEDGER_CHAIN_RPC_URL` and `LEDGER_CHAIN_AGENT_KEY`)."""
    if not config.chain_rpc_url or not config.chain_agent_key:
        return None
    return TrexClient(config.chain_rpc_url, config.chain_agent_key), Rpc(config.chain_rpc_url)


def anchor_publisher(
    client: TrexClient, rpc: Rpc, address: str, app: LedgerApplication, key: Ed25519PrivateKey,
    config: Settings,
) -> AnchorPublisher:
    """Anchors the heads `key` signs on the anchor contract at `address`."""
    return AnchorPublisher(
        client, rpc, address, app.transparency, key.public_key(), config.anchor_from_block
    )


def anchored_verifier(
    rpc_url: str, anchor_address: str, public: Ed25519PublicKey, config: Settings
) -> Callable[[LedgerApplication], tuple[Anchor | None, HeadVerification]]:
    """What `verify --anchored` runs: the store against the latest head anchored at
    `anchor_address` on the chain at `rpc_url`, its signature checked with `public`."""
    rpc = Rpc(rpc_url)
    confirmations, start = config.chain_confirmations, config.anchor_from_block
    return lambda app: verify_anchored(app.admin, rpc, anchor_address, public, start, confirmations)


def build_worker(
    app: LedgerApplication, chain: ChainService | None, key: Ed25519PrivateKey | None,
    config: Settings, threads: int = 1,
) -> WorkerProcess:
    """`ledger worker`'s jobs on the configured broker: the chain jobs with the chain adapter
    on (`chain`), the signing of tree heads with a signing key (`key`), and the anchoring of
    each head signed with both and an anchor contract."""
    signer = HeadSigner(app.transparency, key) if key is not None else None
    periods = {**PERIODS, "sign_tree_head": config.audit_sign_seconds}
    anchor = None
    if chain is not None and chain.client is not None and key is not None and config.anchor_address:
        anchor = anchor_publisher(chain.client, chain.rpc, config.anchor_address, app, key, config)
    jobs = Jobs(chain, build_broker(config.redis_url), periods, signer, anchor)
    return WorkerProcess(jobs, threads=threads)


@contextmanager
def worker_process(
    app: LedgerApplication, key: Ed25519PrivateKey | None, config: Settings, threads: int = 1
) -> Iterator[WorkerProcess]:
    """`ledger worker`'s process on `app` (`build_worker`): with the chain adapter on, its jobs
    on a chain adapter with a projection runner of its own, whose engine is disposed on leaving."""
    if not config.chain_rpc_url:
        yield build_worker(app, None, key, config, threads)
        return
    with chain_service(app, config) as chain:
        yield build_worker(app, chain, key, config, threads)


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


def api_target(services: Services, config: Settings, workers: int) -> FastAPI | str:
    """What uvicorn serves: one worker, the API on `services`; several, the factory each
    worker process builds its own API with (`build_api`)."""
    return api_for(services, config) if workers == 1 else "adapters.bootstrap:build_api"


def run_api(target: FastAPI | str, host: str, port: int, workers: int) -> None:
    """Serves the HTTP API until SIGTERM (requests in flight get `GRACE_SECONDS`); several
    workers each on a socket of their own (`adapters.api.accepting`)."""
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "factory": workers > 1,
        "http": NoDelayHTTPProtocol,
        "log_level": "warning",
        "timeout_graceful_shutdown": GRACE_SECONDS,
        "timeout_worker_healthcheck": WORKER_START_SECONDS,
    }
    if workers > 1 and port != 0:  # (port 0: each worker would get a port of its own)
        serve_workers(uvicorn.Config(target, **options))
    else:
        uvicorn.run(target, **options)


@contextmanager
def serving(services: Services, config: Settings, projector: bool) -> Iterator[WorkerProcess | None]:
    """What the process that serves runs beside the API: the projection runner (unless
    `projector` is off) and, with the chain adapter on and no Redis to share them over, the
    chain jobs (yielded, else None). On leaving: the jobs stop, the runner commits its batch
    in flight and stops, the ledger closes."""
    projecting = None
    if projector:
        projecting = threading.Thread(
            target=services.runner.run_forever, args=(config.database_url,), daemon=True
        )
        projecting.start()
    jobs = None
    try:
        if config.chain_rpc_url and not config.redis_url:
            # The chain adapter gets runners of its own: a runner instance serves one thread.
            own = build_chain(services.ledger, build_runner(services.ledger, config), config)
            assert own is not None  # the adapter is on
            jobs = WorkerProcess(Jobs(own, build_broker(None)))
            jobs.start()
        yield jobs
    finally:
        if jobs is not None:
            jobs.stop()
        services.runner.stop()  # the batch in flight is committed, then the loop ends
        if projecting is not None:
            projecting.join(timeout=GRACE_SECONDS)
        services.ledger.close()


@dataclass(frozen=True)
class DemoKey:
    role: str
    investor_id: str | None
    key: str | None


def demo_keys(services: Services) -> list[DemoKey]:
    """`serve --demo-keys`: an admin and an auditor key, and an investor key for a registered
    investor if there is one, made and recorded on `services`."""
    with snapshot(services.runner.engine) as conn:
        investor_id = any_investor_id(conn)
    admin = KeyAdmin(services.ledger, services.keys)
    roles: list[tuple[str, str | None]] = [("admin", None), ("auditor", None)]
    if investor_id is not None:
        roles.append(("investor", investor_id))
    return [DemoKey(role, investor, admin.create(role, investor).key) for role, investor in roles]


@contextmanager
def key_admin(config: Settings) -> Iterator[KeyAdmin]:
    """Creates, revokes and rotates API keys (recorded as events) on the configured stores."""
    ledger = build_application(config)
    engine = read_engine(config)
    try:
        yield KeyAdmin(ledger, KeyStore(engine))
    finally:
        ledger.close()
        engine.dispose()


@contextmanager
def key_store(config: Settings) -> Iterator[KeyStore]:
    """The API keys' table on the configured read-model database."""
    engine = read_engine(config)
    try:
        yield KeyStore(engine)
    finally:
        engine.dispose()
