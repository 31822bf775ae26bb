"""The ERC-3643 (T-REX 4.1.6) client: deploys token suites, onboards identities, signs token operations.

The platform is custodial and holds one agent key: it owns every suite, is the agent of the
token and of the identity registry, signs KYC claims for the platform's claim issuer and is the
management key of every investor's ONCHAINID. Investors' keys are never needed (the tests' own
client, `tests/chain/trex_helpers.py`, also acts for a holder outside the ledger).

Outbound token operations are split into `sign` (deterministic, with a caller-chosen nonce, so a
worker can store the signed transaction before sending it) and `broadcast` (repeatable: sending
the same signed transaction again never executes it twice). Setup operations (`deploy_suite`,
`ensure_identity`, `prepare_recovery`) check chain state before each step, so repeating one
after a crash finishes it instead of failing.

One module per role: `connection` (web3, contracts, the agent's setup transactions),
`deployer` (suites), `identities` (onboarding), `signer` (token operations: sign, broadcast,
receipts), `reader` (token and registry reads); `model` holds what they share.
"""

from __future__ import annotations

from adapters.chain.trex.deployer import SuiteDeployer
from adapters.chain.trex.identities import IdentityOnboarding
from adapters.chain.trex.model import (
    BASE_FEE_HEADROOM,
    CLAIM_SIGNER_PURPOSE,
    ECDSA_CLAIM_SCHEME,
    ECDSA_KEY_TYPE,
    KYC_CLAIM_DATA,
    KYC_TOPIC,
    MANAGEMENT_PURPOSE,
    SETUP_GAS_MARGIN,
    TOKEN_CALL_GAS,
    TOKEN_CALL_KINDS,
    TREX_VERSION,
    ZERO_ADDRESS,
    BlockRef,
    ChainError,
    ChainRevertedError,
    ChainTimeoutError,
    NonceConflictError,
    Receipt,
    SignedTx,
    Suite,
    TokenCall,
)
from adapters.chain.trex.signer import TokenSigner


class TrexClient(SuiteDeployer, IdentityOnboarding, TokenSigner):
    """The chain port's implementation over web3, acting as the platform's agent."""


__all__ = [
    "BASE_FEE_HEADROOM",
    "CLAIM_SIGNER_PURPOSE",
    "ECDSA_CLAIM_SCHEME",
    "ECDSA_KEY_TYPE",
    "KYC_CLAIM_DATA",
    "KYC_TOPIC",
    "MANAGEMENT_PURPOSE",
    "SETUP_GAS_MARGIN",
    "TOKEN_CALL_GAS",
    "TOKEN_CALL_KINDS",
    "TREX_VERSION",
    "ZERO_ADDRESS",
    "BlockRef",
    "ChainError",
    "ChainRevertedError",
    "ChainTimeoutError",
    "NonceConflictError",
    "Receipt",
    "SignedTx",
    "Suite",
    "TokenCall",
    "TrexClient",
]
