"""Identity onboarding: an investor's ONCHAINID (managed by the agent: the platform is
custodial), the platform's KYC claim on it, its registration, and wallet recovery keys."""

from __future__ import annotations

from eth_abi.abi import encode as abi_encode
from eth_account.messages import encode_defunct
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from adapters.chain.trex.model import (
    ECDSA_CLAIM_SCHEME,
    ECDSA_KEY_TYPE,
    KYC_CLAIM_DATA,
    KYC_TOPIC,
    MANAGEMENT_PURPOSE,
    ChainRevertedError,
    Suite,
    key_hash,
)
from adapters.chain.trex.reader import ChainReader


class IdentityOnboarding(ChainReader):
    """Makes wallets verified holders of a suite, each step skipped when the chain shows it done."""

    def ensure_identity(self, suite: Suite, wallet: str, country: int) -> None:
        """Makes `wallet` a verified holder of the suite, resident of `country` (ISO 3166 numeric).

        Creates its ONCHAINID (managed by the agent, as the platform is custodial), adds the
        platform's KYC claim and registers it. Idempotent: each step is skipped when the chain
        already shows it done.
        """
        wallet = to_checksum_address(wallet)
        registry = self._contract("IdentityRegistry", suite.identity_registry)
        if registry.functions.contains(wallet).call():
            return
        identity = self._ensure_onchain_id(suite, wallet)
        self._ensure_kyc_claim(suite, identity)
        self._agent_execute(
            "IdentityRegistry", suite.identity_registry, "registerIdentity", [wallet, identity, country]
        )

    def _ensure_onchain_id(self, suite: Suite, wallet: str) -> str:
        factory = self._contract("IdFactory", suite.id_factory)
        identity: str = factory.functions.getIdentity(wallet).call()
        if int(identity, 16) == 0:
            self._agent_execute(
                "IdFactory",
                suite.id_factory,
                "createIdentityWithManagementKeys",
                [wallet, wallet.lower(), [key_hash(self.agent)]],
            )
            identity = factory.functions.getIdentity(wallet).call()
        return to_checksum_address(identity)

    def _ensure_kyc_claim(self, suite: Suite, identity: str) -> None:
        claim_id = keccak(abi_encode(["address", "uint256"], [suite.claim_issuer, KYC_TOPIC]))
        claim = self._contract("Identity", identity).functions.getClaim(claim_id).call()
        if int(claim[2], 16) != 0:  # (topic, scheme, issuer, signature, data, uri)
            return
        digest = keccak(abi_encode(["address", "uint256", "bytes"], [identity, KYC_TOPIC, KYC_CLAIM_DATA]))
        signature = self._account.sign_message(encode_defunct(primitive=digest)).signature
        self._agent_execute(
            "Identity",
            identity,
            "addClaim",
            [KYC_TOPIC, ECDSA_CLAIM_SCHEME, suite.claim_issuer, bytes(signature), KYC_CLAIM_DATA, ""],
        )

    def prepare_recovery(self, suite: Suite, lost: str, new: str) -> None:
        """Lets `new` replace `lost`: makes it a management key of the lost wallet's ONCHAINID (idempotent).

        `new` must not be registered in the suite yet: recovery registers it with the lost identity.
        """
        identity = self.identity_of(suite, lost)
        if identity is None:
            raise ChainRevertedError(f"wallet {lost} has no identity in the registry")
        key = key_hash(to_checksum_address(new))
        if not self._contract("Identity", identity).functions.keyHasPurpose(key, MANAGEMENT_PURPOSE).call():
            self._agent_execute("Identity", identity, "addKey", [key, MANAGEMENT_PURPOSE, ECDSA_KEY_TYPE])
