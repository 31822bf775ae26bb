"""Every rejection the ledger can give, each with the stable `code` of the API contract."""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger reports to its callers."""

    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationError(LedgerError):
    code = "validation_error"


class NotFoundError(LedgerError):
    code = "not_found"


class AlreadyExistsError(LedgerError):
    code = "already_exists"


class IdempotencyKeyReusedError(LedgerError):
    code = "idempotency_key_reused"


class ConcurrencyError(LedgerError):
    """Other writers kept changing the same aggregates; the command gave up."""

    code = "concurrency_conflict"


class InvalidStateError(LedgerError):
    code = "invalid_state"


class AssetNotOfferingError(LedgerError):
    code = "asset_not_offering"


class InvestorNotEligibleError(LedgerError):
    code = "investor_not_eligible"


class AmountBelowMinimumError(LedgerError):
    code = "amount_below_minimum"


class AmountAboveMaximumError(LedgerError):
    code = "amount_above_maximum"


class AmountTooSmallError(LedgerError):
    code = "amount_too_small"


class AuthorizedSupplyExceededError(LedgerError):
    code = "authorized_supply_exceeded"


class MaxHoldersExceededError(LedgerError):
    code = "max_holders_exceeded"


class MaxBalanceExceededError(LedgerError):
    code = "max_balance_exceeded"


class InvalidQuantityError(LedgerError):
    code = "invalid_quantity"


class SameInvestorError(LedgerError):
    code = "same_investor"


class AssetPausedError(LedgerError):
    code = "asset_paused"


class InvestorFrozenError(LedgerError):
    code = "investor_frozen"


class InsufficientBalanceError(LedgerError):
    code = "insufficient_balance"


class InvalidValuationError(LedgerError):
    """A valuation with no positive price, dated in the future or before the asset existed."""

    code = "invalid_valuation"


class NoVotingPowerError(LedgerError):
    code = "no_voting_power"


class AlreadyVotedError(LedgerError):
    code = "already_voted"


class ProposalClosedError(LedgerError):
    code = "proposal_closed"


class InvalidOptionError(LedgerError):
    code = "invalid_option"


class IntegrityViolationError(LedgerError):
    """The stored history failed verification (hash chain or import checks)."""

    code = "integrity_violation"


class OutcomeUnknownError(LedgerError):
    """The store stopped answering while a command was being committed, and did not answer
    again in time to tell whether it was: look it up, or send it again with the same
    idempotency key, before sending it once more."""

    code = "outcome_unknown"


class ConfigurationError(LedgerError):
    """The process is configured in a way the ledger refuses to run with (a pinned setting
    of the event store overridden, or a store that fails its start-up self-check)."""

    code = "configuration_error"
