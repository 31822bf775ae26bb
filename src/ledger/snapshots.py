"""Aggregate snapshots: derived data that spares a process replaying a long stream.

An asset's stream grows with every transfer; without snapshots the first command on it
after a restart, or after another process changed it, would replay its whole history.
Every `SNAPSHOT_EVERY` versions the committer stores the aggregate's state in the
library's snapshot table, and loading an aggregate starts from its latest snapshot.

Snapshots are never part of the history: they sit in their own table, outside the hash
chain, `verify` and `export` ignore them, and the table may be emptied at any time (the
next load of a long stream replays it once and snapshots it again). A snapshot that
cannot be written costs speed only, never a command: the failure is logged.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import IntegrityError, PersistenceError

SNAPSHOT_EVERY = 1000  # versions between two snapshots of a stream
logger = logging.getLogger(__name__)


def due(version_before: int, version_after: int) -> bool:
    """Whether appending took a stream across a multiple of `SNAPSHOT_EVERY`."""
    return version_after // SNAPSHOT_EVERY > version_before // SNAPSHOT_EVERY


def take(app: Application[UUID], aggregate: Aggregate) -> None:
    """Stores a snapshot of `aggregate` (with no pending events) as it is now."""
    if app.snapshots is None:
        return
    snapshot_class: Any = getattr(type(aggregate), "Snapshot", Snapshot)
    try:
        app.snapshots.put([snapshot_class.take(aggregate)])
    except IntegrityError:
        pass  # another process took this very snapshot
    except (PersistenceError, TypeError, ValueError) as error:
        logger.warning(
            "snapshot of %s at version %s not stored: %s", aggregate.id, aggregate.version, error
        )


def refresh_if_stale(app: Application[UUID], aggregate: Aggregate) -> None:
    """After a load from the store: snapshots a long stream whose latest snapshot is
    `SNAPSHOT_EVERY` or more versions old (or missing), so the next load is short."""
    if app.snapshots is None or aggregate.version < SNAPSHOT_EVERY:
        return
    latest = list(app.snapshots.get(aggregate.id, desc=True, limit=1))
    if not latest or aggregate.version - latest[0].originator_version >= SNAPSHOT_EVERY:
        take(app, aggregate)
