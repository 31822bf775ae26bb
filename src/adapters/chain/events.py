"""Decoding of raw chain logs into named events, by (contract address, topic0).

Different T-REX contracts share a topic0 (`ImplementationAuthoritySet` is indexed on the
proxies and not on the factory), and a proxy emits the events of both its own ABI and its
implementation's, so a log is decoded with the ABIs of the kind of contract that emitted it,
never with a global topic table. The layouts are computed once per kind; decoding a log is
then a dict lookup, one `eth_abi.decode` of its data and a few slices of its topics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from adapters.chain.artifacts import abi

# The ABIs a contract of each kind can emit events from (implementation first, then its proxy).
KIND_ABIS: Mapping[str, tuple[str, ...]] = {
    "token": ("Token", "TokenProxy"),
    "identity_registry": ("IdentityRegistry", "IdentityRegistryProxy"),
    "identity_registry_storage": ("IdentityRegistryStorage", "IdentityRegistryStorageProxy"),
    "compliance": ("ModularCompliance", "ModularComplianceProxy"),
    "claim_topics_registry": ("ClaimTopicsRegistry", "ClaimTopicsRegistryProxy"),
    "trusted_issuers_registry": ("TrustedIssuersRegistry", "TrustedIssuersRegistryProxy"),
    "claim_issuer": ("ClaimIssuer",),
    "identity": ("Identity", "IdentityProxy"),
    "id_factory": ("IdFactory",),
    "trex_factory": ("TREXFactory",),
    "trex_implementation_authority": ("TREXImplementationAuthority",),
    "compliance_module": ("CountryAllowModule", "ModuleProxy"),
}

Converter = Callable[[Any], Any]


TOPIC_CACHE = 200_000  # decoded indexed values a decoder keeps


class UnknownLogError(ValueError):
    """A log that is not an event of a bound contract (unbound address, unknown topic0, bad data)."""


@dataclass(frozen=True, slots=True)
class DecodedLog:
    """One event emitted on chain, located by block and log index (addresses EIP-55, amounts int)."""

    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str


@dataclass(frozen=True, slots=True)
class _Layout:
    name: str
    topic_fields: tuple[tuple[str, Converter], ...]
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    data_converters: tuple[Converter, ...] | None  # None: eth_abi's values are already final
    word_converters: tuple[Converter, ...] | None  # data of static one-word values only: read directly


@lru_cache(maxsize=65536)
def _checksum(address: str) -> str:
    return to_checksum_address(address)


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _canonical_type(param: Mapping[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _identity(value: Any) -> Any:
    return value


def _value_converter(param: Mapping[str, Any]) -> Converter | None:
    """How a value decoded by eth_abi becomes the event argument; None when it already is."""
    kind: str = param["type"]
    if kind.endswith("]"):
        element = {**param, "type": kind[: kind.rindex("[")]}
        convert = _value_converter(element)
        if convert is None:
            return list
        return lambda values: [convert(v) for v in values]
    if kind == "tuple":
        names = [c["name"] for c in param["components"]]
        converters = [_value_converter(c) or _identity for c in param["components"]]
        return lambda values: {n: f(v) for n, f, v in zip(names, converters, values, strict=True)}
    if kind == "address":
        return _checksum
    if kind.startswith("bytes"):
        return _hex
    return None


def _topic_converter(param: Mapping[str, Any]) -> Converter:
    """Decodes one indexed argument from its 32-byte topic; dynamic values only leave their hash."""
    kind: str = param["type"]
    if kind == "address":
        return lambda word: _checksum(_hex(word[12:]))
    if kind.startswith("uint"):
        return lambda word: int.from_bytes(word, "big")
    if kind.startswith("int"):
        return lambda word: int.from_bytes(word, "big", signed=True)
    if kind == "bool":
        return lambda word: word[-1] != 0
    if kind.startswith("bytes") and kind != "bytes":
        size = int(kind[len("bytes") :])
        return lambda word: _hex(word[:size])
    return _hex  # string, bytes, arrays and structs are indexed by their keccak hash


def _one_word(param: Mapping[str, Any]) -> bool:
    """A value ABI-encoded as exactly one 32-byte word (no offset, no length)."""
    kind: str = param["type"]
    if "[" in kind or kind.startswith("tuple"):
        return False
    return (
        kind in ("address", "bool")
        or kind.startswith(("uint", "int"))
        or (kind.startswith("bytes") and kind != "bytes")
    )


def _layout(event: Mapping[str, Any]) -> tuple[bytes, int, _Layout]:
    inputs: Sequence[Mapping[str, Any]] = event["inputs"]
    signature = f"{event['name']}({','.join(_canonical_type(p) for p in inputs)})"
    indexed = [p for p in inputs if p.get("indexed")]
    data = [p for p in inputs if not p.get("indexed")]
    converters = [_value_converter(p) for p in data]
    layout = _Layout(
        name=event["name"],
        topic_fields=tuple((p["name"], _topic_converter(p)) for p in indexed),
        data_names=tuple(p["name"] for p in data),
        data_types=tuple(_canonical_type(p) for p in data),
        data_converters=(
            tuple(c or _identity for c in converters) if any(c is not None for c in converters) else None
        ),
        word_converters=tuple(_topic_converter(p) for p in data) if all(map(_one_word, data)) else None,
    )
    return keccak(text=signature), 1 + len(indexed), layout


@cache
def _kind_layouts(kind: str) -> dict[tuple[bytes, int], _Layout]:
    """The events a contract of `kind` emits, by (topic0, number of topics)."""
    layouts: dict[tuple[bytes, int], _Layout] = {}
    for contract in KIND_ABIS[kind]:
        for entry in abi(contract):
            if entry["type"] == "event" and not entry.get("anonymous"):
                topic0, topics, layout = _layout(entry)
                layouts.setdefault((topic0, topics), layout)
    return layouts


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    return bytes(value)


def _as_int(value: str | int) -> int:
    return value if isinstance(value, int) else int(value, 16)


def _as_hex(value: str | bytes) -> str:
    return value if isinstance(value, str) else _hex(bytes(value))


class LogDecoder:
    """Decodes the logs of a known set of contracts, each bound to its kind (see `KIND_ABIS`)."""

    def __init__(self, contracts: Mapping[str, str]) -> None:
        self._contracts: dict[str, tuple[str, str, dict[tuple[bytes, int], _Layout]]] = {}
        for address, kind in contracts.items():
            if kind not in KIND_ABIS:
                raise ValueError(f"unknown contract kind {kind!r} for {address}")
            self._contracts[address.lower()] = (_checksum(address), kind, _kind_layouts(kind))
        # Indexed values recur (topic0s, holders' addresses): each hex topic is decoded once.
        self._topics: dict[tuple[Converter, str], Any] = {}

    def decode(self, log: Mapping[str, Any]) -> DecodedLog:
        """The event of one raw JSON-RPC log (hex strings; web3's HexBytes/int forms are accepted too)."""
        name, args, address = self.event(log)
        return DecodedLog(
            name=name,
            args=args,
            address=address,
            block_number=_as_int(log["blockNumber"]),
            block_hash=_as_hex(log["blockHash"]),
            log_index=_as_int(log["logIndex"]),
            tx_hash=_as_hex(log["transactionHash"]),
        )

    def event(self, log: Mapping[str, Any]) -> tuple[str, dict[str, Any], str]:
        """The event name, its arguments and the emitting contract (EIP-55) of one raw log,
        without its location: what `decode` returns, for callers that place it themselves."""
        raw_address = log["address"]
        bound = self._contracts.get(raw_address) if isinstance(raw_address, str) else None
        if bound is None:
            bound = self._contracts.get(_as_hex(raw_address).lower())
            if bound is None:
                raise UnknownLogError(f"log from unbound address {raw_address}")
        address, kind, layouts = bound
        topics = log["topics"]
        if not topics:
            raise UnknownLogError(f"anonymous log from {kind} {address}")
        topic0 = self._topic(_as_bytes, topics[0])
        layout = layouts.get((topic0, len(topics)))
        if layout is None:
            raise UnknownLogError(
                f"topic0 {_hex(topic0)} with {len(topics)} topics is not an event of {kind}"
            )
        args = {
            name: self._topic(convert, raw)
            for (name, convert), raw in zip(layout.topic_fields, topics[1:], strict=True)
        }
        data = _as_bytes(log["data"]) if layout.data_types else b""
        words = layout.word_converters
        if words is not None and len(data) == 32 * len(words):
            for i, (name, convert) in enumerate(zip(layout.data_names, words, strict=True)):
                args[name] = convert(data[32 * i : 32 * i + 32])
        elif layout.data_types:
            try:
                values = abi_decode(layout.data_types, data)
            except DecodingError as error:
                raise UnknownLogError(f"{layout.name} data does not decode: {error}") from None
            if layout.data_converters is None:
                args.update(zip(layout.data_names, values, strict=True))
            else:
                args.update(
                    (n, f(v))
                    for n, f, v in zip(layout.data_names, layout.data_converters, values, strict=True)
                )
        return layout.name, args, address

    def _topic(self, convert: Converter, raw: str | bytes) -> Any:
        if not isinstance(raw, str):
            return convert(_as_bytes(raw))
        key = (convert, raw)
        if key not in self._topics:
            if len(self._topics) >= TOPIC_CACHE:
                self._topics.clear()
            self._topics[key] = convert(_as_bytes(raw))
        return self._topics[key]
