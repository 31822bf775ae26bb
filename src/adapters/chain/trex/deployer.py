"""Deploying token suites: the contracts every suite shares (implementations, factories, the
platform's claim issuer, the country compliance module), deployed once per client, then one
T-REX suite per asset through the T-REX factory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

from adapters.chain.events import LogDecoder
from adapters.chain.trex.connection import AgentConnection
from adapters.chain.trex.model import (
    CLAIM_SIGNER_PURPOSE,
    ECDSA_KEY_TYPE,
    KYC_TOPIC,
    TREX_VERSION,
    ZERO_ADDRESS,
    Suite,
    key_hash,
)

_IMPLEMENTATIONS = (  # the order of TREXImplementationAuthority's TREXContracts struct
    "Token",
    "ClaimTopicsRegistry",
    "IdentityRegistry",
    "IdentityRegistryStorage",
    "TrustedIssuersRegistry",
    "ModularCompliance",
)


@dataclass(frozen=True)
class _Infrastructure:
    """Contracts shared by every suite a client deploys."""

    id_factory: str
    claim_issuer: str
    trex_factory: str
    compliance_module: str


@dataclass(frozen=True)
class TokenDetails:
    """`ITREXFactory.TokenDetails`, its fields in the struct's order (`astuple` is the ABI tuple)."""

    owner: str
    name: str
    symbol: str
    decimals: int
    irs: str  # an existing identity registry storage to share; zero: a new one
    onchain_id: str  # the token's own ONCHAINID; zero: none
    ir_agents: list[str]
    token_agents: list[str]
    compliance_modules: list[str]
    compliance_settings: list[bytes]  # one call on each module, encoded


@dataclass(frozen=True)
class ClaimDetails:
    """`ITREXFactory.ClaimDetails`: the claim topics holders need, and who may issue them."""

    claim_topics: list[int]
    issuers: list[str]
    issuer_claims: list[list[int]]  # the topics each issuer is trusted for


class SuiteDeployer(AgentConnection):
    """Deploys T-REX suites owned by the agent, who is agent of the token and its registry."""

    def __init__(self, rpc_url: str, agent_key: str, *, timeout: float = 10.0) -> None:
        super().__init__(rpc_url, agent_key, timeout=timeout)
        self._infrastructure: _Infrastructure | None = None

    def _shared_infrastructure(self) -> _Infrastructure:
        """Implementations, authorities, factories, claim issuer and compliance module, deployed once."""
        if self._infrastructure is not None:
            return self._infrastructure
        implementations = [self._deploy(name) for name in _IMPLEMENTATIONS]
        authority = self._deploy("TREXImplementationAuthority", True, ZERO_ADDRESS, ZERO_ADDRESS)
        self._agent_execute(
            "TREXImplementationAuthority",
            authority,
            "addAndUseTREXVersion",
            [TREX_VERSION, tuple(implementations)],
        )
        identity_implementation = self._deploy("Identity", self.agent, True)
        identity_authority = self._deploy("ImplementationAuthority", identity_implementation)
        id_factory = self._deploy("IdFactory", identity_authority)
        claim_issuer = self._deploy("ClaimIssuer", self.agent)
        self._agent_execute(
            "ClaimIssuer",
            claim_issuer,
            "addKey",
            [key_hash(self.agent), CLAIM_SIGNER_PURPOSE, ECDSA_KEY_TYPE],
        )
        module_implementation = self._deploy("CountryAllowModule")
        module = self._deploy(
            "ModuleProxy", module_implementation, self._encode("CountryAllowModule", "initialize")
        )
        trex_factory = self._deploy("TREXFactory", authority, id_factory)
        self._agent_execute("IdFactory", id_factory, "addTokenFactory", [trex_factory])
        self._infrastructure = _Infrastructure(id_factory, claim_issuer, trex_factory, module)
        return self._infrastructure

    def deploy_suite(
        self, *, name: str, symbol: str, decimals: int, countries: Sequence[int], salt: str
    ) -> Suite:
        """Deploys a T-REX token with its registries and compliance through the T-REX factory.

        The agent owns everything and is agent of the token and the identity registry; holders
        must carry the platform's KYC claim and live in one of `countries` (ISO 3166 numeric).
        `salt` must be new for this client's factory. The token stays paused, as `init` leaves it.
        """
        infra = self._shared_infrastructure()
        settings = self._encode("CountryAllowModule", "batchAllowCountries", [list(countries)])
        token = TokenDetails(
            owner=self.agent,
            name=name,
            symbol=symbol,
            decimals=decimals,
            irs=ZERO_ADDRESS,
            onchain_id=ZERO_ADDRESS,
            ir_agents=[self.agent],
            token_agents=[self.agent],
            compliance_modules=[infra.compliance_module],
            compliance_settings=[bytes.fromhex(settings[2:])],
        )
        claims = ClaimDetails(
            claim_topics=[KYC_TOPIC], issuers=[infra.claim_issuer], issuer_claims=[[KYC_TOPIC]]
        )
        receipt = self._agent_execute(
            "TREXFactory", infra.trex_factory, "deployTREXSuite", [salt, astuple(token), astuple(claims)]
        )
        decoder = LogDecoder({infra.trex_factory: "trex_factory"})
        factory_events = [
            decoder.decode(log) for log in receipt["logs"] if log["address"] == infra.trex_factory
        ]
        deployed = next(event.args for event in factory_events if event.name == "TREXSuiteDeployed")
        return Suite(
            chain_id=self.chain_id,
            token=deployed["_token"],
            identity_registry=deployed["_ir"],
            identity_registry_storage=deployed["_irs"],
            compliance=deployed["_mc"],
            claim_topics_registry=deployed["_ctr"],
            trusted_issuers_registry=deployed["_tir"],
            id_factory=infra.id_factory,
            claim_issuer=infra.claim_issuer,
            deployed_at_block=receipt["blockNumber"],
        )
