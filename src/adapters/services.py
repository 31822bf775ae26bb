"""What `bootstrap` hands each process that serves the HTTP API: the ledger, its projection
runner, the API keys and the metrics. The API reads them; only `bootstrap` builds them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from adapters.api.keys import KeyStore
from adapters.api.metrics import Metrics
from ledger.application import LedgerApplication
from projections.runner import ProjectionRunner


@dataclass
class Services:
    ledger: LedgerApplication
    runner: ProjectionRunner
    keys: KeyStore
    metrics: Metrics
    started: float = field(default_factory=time.monotonic)
