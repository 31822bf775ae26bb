"""Compiled contracts shipped by the pinned npm packages of `contracts/`.

T-REX 4.1.6 and ONCHAINID 2.2.1 ship Hardhat artifacts (`abi` and `bytecode`). T-REX
also bundles an older copy of the ONCHAINID contracts under its own `artifacts/@onchain-id`;
only the ONCHAINID package's own build is used, so `Identity` means ONCHAINID 2.2.1.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

CONTRACTS_DIR_ENV = "LEDGER_CONTRACTS_DIR"
_ARTIFACT_ROOTS = (
    "node_modules/@onchain-id/solidity/artifacts/contracts",
    "node_modules/@tokenysolutions/t-rex/artifacts/contracts",
)
_ANVIL = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"


class ArtifactNotFoundError(LookupError):
    """The contracts directory or a named artifact is missing (run `npm install` in contracts/)."""


@cache
def contracts_dir() -> Path:
    """The `contracts/` directory: `LEDGER_CONTRACTS_DIR`, else the nearest above the package or the cwd."""
    configured = os.environ.get(CONTRACTS_DIR_ENV)
    if configured:
        path = Path(configured)
        if not (path / "node_modules").is_dir():
            raise ArtifactNotFoundError(f"{CONTRACTS_DIR_ENV}={configured} has no node_modules")
        return path
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (start, *start.parents):
            candidate = parent / "contracts"
            if (candidate / "node_modules").is_dir():
                return candidate
    raise ArtifactNotFoundError("no contracts/node_modules found above the package or the working directory")


@cache
def _artifact_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for root in _ARTIFACT_ROOTS:
        for path in sorted((contracts_dir() / root).rglob("*.json")):
            if not path.name.endswith(".dbg.json"):
                index.setdefault(path.stem, path)
    return index


@cache
def artifact(name: str) -> dict[str, Any]:
    """The artifact of contract `name` (e.g. "Token", "IdFactory"): a dict with `abi` and `bytecode`."""
    path = _artifact_index().get(name)
    if path is None:
        raise ArtifactNotFoundError(f"no artifact named {name!r} under {contracts_dir()}")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def abi(name: str) -> list[dict[str, Any]]:
    """The ABI of contract `name`."""
    entries: list[dict[str, Any]] = artifact(name)["abi"]
    return entries


def anvil_binary() -> Path:
    """The anvil executable installed by the `@foundry-rs/anvil` npm package."""
    path = contracts_dir() / _ANVIL
    if not path.is_file():
        raise ArtifactNotFoundError(f"anvil binary not found at {path}")
    return path
