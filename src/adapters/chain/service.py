"""The chain adapter as one service: deploy and bind tokens, carry out the outbox,
mirror the bound tokens, reconcile.

Built by `bootstrap` when `LEDGER_CHAIN_RPC_URL` is set; the CLI, the HTTP API
and the dramatiq jobs all go through it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import pycountry
from sqlalchemy import select

from adapters.chain.mirror import Mirror, SyncReport
from adapters.chain.outbound import OutboxWorker, country_number
from adapters.chain.reconcile import reconcile
from adapters.chain.rpc import Rpc
from adapters.chain.trex import Suite, TokenCall, TrexClient
from ledger.application import LedgerApplication
from ledger.commit import Outcome
from ledger.domain.chain import ANCHOR_MIRROR
from ledger.errors import InvalidStateError, NotFoundError
from projections.assets import assets
from projections.chain import reconciliation
from projections.runner import ProjectionRunner
from projections.schema import snapshot

logger = logging.getLogger(__name__)


@dataclass
class ChainService:
    app: LedgerApplication
    runner: ProjectionRunner
    rpc: Rpc
    client: TrexClient | None  # None without an agent key: mirror and reconcile only
    confirmations: int
    anchor_address: str | None = None  # the anchor contract of signed tree heads, mirrored too
    anchor_from_block: int = 0
    mirror: Mirror = field(init=False)
    worker: OutboxWorker | None = field(init=False)
    _reading: threading.RLock = field(init=False, default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.mirror = Mirror(self.app, self.rpc, self.confirmations)
        self.worker = (
            OutboxWorker(self.app, self.client, self.bound_assets) if self.client is not None else None
        )

    @cached_property
    def chain_id(self) -> int:
        return int(self.rpc.call("eth_chainId"), 16)

    def bound_assets(self) -> list[str]:
        """Assets bound to a token on this chain, from the read model brought up to the head
        (a recovery owed at some position concerns every asset bound by then)."""
        with self._reading, self.runner.engine.connect() as conn:
            self.runner.catch_up()
            rows = conn.execute(
                select(assets.c.asset_id)
                .where(assets.c.chain_id == self.chain_id)
                .order_by(assets.c.asset_id)
            )
            return [row.asset_id for row in rows]

    def deploy(self, asset_id: str) -> tuple[Suite, Outcome]:
        """Deploys a full T-REX suite for an approved asset, aligns its pause state with the
        ledger's, binds it and starts mirroring it from the deployment block."""
        if self.client is None:
            msg = "deploying needs LEDGER_CHAIN_AGENT_KEY"
            raise InvalidStateError(msg)
        asset = self.app.get_asset(asset_id)
        if asset.token is not None:
            msg = f"asset {asset_id} is already bound to a token"
            raise InvalidStateError(msg)
        allowed = asset.allowed_countries or [c.alpha_2 for c in pycountry.countries]
        suite = self.client.deploy_suite(
            name=asset.name,
            symbol=asset.symbol,
            decimals=asset.decimals,
            countries=sorted({country_number(code) for code in allowed}),
            salt=asset_id,
        )
        if self.client.paused(suite) and not asset.paused:
            self.client.agent_call(suite, TokenCall("unpause", {}))
        outcome = self.app.bind_token(asset_id, suite.chain_id, suite.token, suite.identity_registry)
        self.mirror.attach(asset_id, suite.deployed_at_block, suite.as_dict())
        return suite, outcome

    def attach_bound(self) -> list[str]:
        """Starts mirroring bound tokens not mirrored yet (bound through the API), from genesis."""
        started = []
        for asset_id in self.bound_assets():
            try:
                self.mirror.mirror_of(asset_id)
            except NotFoundError:
                if self.mirror.attach(asset_id, 0):
                    started.append(asset_id)
        return started

    def sync(self, progress: Callable[[str, int, int], None] | None = None) -> list[SyncReport]:
        """One mirror cycle over every bound token (`progress` hears asset, blocks done, blocks to do)."""
        with self._reading:
            self.attach_bound()
            reports = []
            for asset_id in self.bound_assets():
                hear = None if progress is None else partial(progress, asset_id)
                reports.append(self.mirror.sync(asset_id, hear))
            if self.anchor_address:
                self.mirror.attach_anchor(self.chain_id, self.anchor_address, self.anchor_from_block)
                hear = None if progress is None else partial(progress, ANCHOR_MIRROR)
                reports.append(self.mirror.sync_anchor(self.chain_id, self.anchor_address, hear))
            return reports

    def carry_out(self) -> int:
        """Carries out the open outbox operations (a transient failure raises, to be retried)."""
        if self.worker is None:
            return 0
        return self.worker.run_once()

    def reconcile(self, asset_id: str, idempotency_key: str | None = None) -> tuple[Outcome, dict[str, Any]]:
        """Mirrors the asset's token to the head, brings the read models up to date, compares;
        returns the recorded run and its report. A repeated idempotency key replays the first run."""
        with self._reading:  # one runner and one mirror per service: threads take turns
            outcome = self.app.replayed("reconcile", {"asset_id": asset_id}, idempotency_key)
            if outcome is None:
                self.attach_bound()
                self.mirror.sync(asset_id)
                self.runner.catch_up()
                outcome = reconcile(self.app, self.runner.engine, asset_id, idempotency_key)
            self.runner.catch_up()
        with snapshot(self.runner.engine) as conn:
            report = reconciliation(conn, outcome.result["reconciliation_id"])
        assert report is not None
        return outcome, report
