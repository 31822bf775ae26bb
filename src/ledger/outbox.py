"""The chain outbox: which ledger events must be carried out on a bound ERC-3643 token.

When the ledger settles an investment, moves, freezes or burns tokens, pauses an
asset or recovers a wallet, and the asset is bound to a token, the matching
chain operation is written to the outbox in the very transaction that appends
the events (`ledger_outbox`, see `ledger.store`). A worker carries each
operation out once, in order, and records its outcome as events.

This module only decides *what* is owed to the chain; it knows nothing of how a
chain is reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.asset import Asset
from ledger.domain.investor import Investor

MINT = "mint"
BURN = "burn"
FORCED_TRANSFER = "forced_transfer"
FREEZE_PARTIAL = "freeze_partial"
UNFREEZE_PARTIAL = "unfreeze_partial"
SET_ADDRESS_FROZEN = "set_address_frozen"
PAUSE = "pause"
UNPAUSE = "unpause"
RECOVER = "recover"

PENDING, SIGNED, DONE, FAILED = "pending", "signed", "done", "failed"
OPEN_STATES = (PENDING, SIGNED)


@dataclass(frozen=True)
class OutboxEntry:
    """One operation owed to the chain, caused by the event at `event_index` of its batch."""

    event_index: int
    asset_id: str | None  # None: every bound asset the investor's wallet is on (recovery)
    kind: str
    payload: dict[str, Any]


def _asset_operation(event: Any) -> tuple[str, dict[str, Any]] | None:
    """The chain operation an asset event calls for on a bound token, if any."""
    if isinstance(event, Asset.TokensIssued):
        return MINT, {"investor_id": event.investor_id, "quantity": event.quantity}
    if isinstance(event, Asset.TokensTransferred):
        # The platform is custodial: the agent carries out every ledger transfer.
        return FORCED_TRANSFER, {
            "from_investor_id": event.from_investor_id,
            "to_investor_id": event.to_investor_id,
            "quantity": event.quantity,
        }
    if isinstance(event, Asset.TokensRedeemed):
        return BURN, {"investor_id": event.investor_id, "quantity": event.quantity}
    if isinstance(event, Asset.TokensFrozen):
        return FREEZE_PARTIAL, {"investor_id": event.investor_id, "quantity": event.quantity}
    if isinstance(event, Asset.TokensUnfrozen):
        return UNFREEZE_PARTIAL, {"investor_id": event.investor_id, "quantity": event.quantity}
    if isinstance(event, Asset.AddressFrozen):
        return SET_ADDRESS_FROZEN, {"investor_id": event.investor_id, "frozen": True}
    if isinstance(event, Asset.AddressUnfrozen):
        return SET_ADDRESS_FROZEN, {"investor_id": event.investor_id, "frozen": False}
    if isinstance(event, Asset.Paused):
        return PAUSE, {}
    if isinstance(event, Asset.Unpaused):
        return UNPAUSE, {}
    return None


def chain_operations(events: Sequence[Any], aggregates: Mapping[UUID, Aggregate]) -> list[OutboxEntry]:
    """The operations a batch of new events owes the chain, in event order.

    An asset event counts only once its asset is bound: a token bound within the
    same batch covers the events after its `TokenBound`, not those before.
    """
    bound_in_batch = {e.originator_id for e in events if isinstance(e, Asset.TokenBound)}
    bound: dict[UUID, bool] = {}
    entries: list[OutboxEntry] = []
    for index, event in enumerate(events):
        owner = aggregates.get(event.originator_id)
        if isinstance(owner, Asset):
            if event.originator_id not in bound:
                bound[event.originator_id] = owner.token is not None and (
                    event.originator_id not in bound_in_batch
                )
            if isinstance(event, Asset.TokenBound):
                bound[event.originator_id] = True
                continue
            operation = _asset_operation(event) if bound[event.originator_id] else None
            if operation is not None:
                entries.append(OutboxEntry(index, owner.asset_id, *operation))
        elif isinstance(owner, Investor) and isinstance(event, Investor.WalletRecovered):
            entries.append(
                OutboxEntry(
                    index,
                    None,
                    RECOVER,
                    {
                        "investor_id": owner.investor_id,
                        "lost_wallet": event.lost_wallet,
                        "new_wallet": event.new_wallet,
                    },
                )
            )
    return entries
