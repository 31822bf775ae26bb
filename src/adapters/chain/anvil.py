"""A local anvil node for tests and the demo, with the dev RPC methods used to simulate reorgs."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Self

from adapters.chain.artifacts import anvil_binary

# Accounts 0..9 of anvil's default mnemonic "test test test test test test test test test test test
# junk" (m/44'/60'/0'/0/i). Public test keys: never fund them on a real network.
DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)

_START_TIMEOUT = 15.0
_START_ATTEMPTS = 3


class AnvilError(RuntimeError):
    """anvil did not start, or answered a dev RPC call with an error."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Anvil:
    """A running anvil process on 127.0.0.1; stop it with `stop()` or by leaving the `with` block."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log
        self._request_id = 0

    @classmethod
    def start(
        cls,
        port: int | None = None,
        *,
        block_time: float | None = None,
        gas_limit: int = 100_000_000,
        extra_args: Sequence[str] = (),
    ) -> Anvil:
        """Starts anvil (a free port unless `port` is given) and returns once it answers `eth_chainId`."""
        last_error = ""
        for _ in range(1 if port is not None else _START_ATTEMPTS):
            chosen = port if port is not None else _free_port()
            args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(chosen)]
            args += ["--gas-limit", str(gas_limit)]
            if block_time is not None:
                args += ["--block-time", str(block_time)]
            args += list(extra_args)
            log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
            node = cls(process, chosen, log)
            last_error = node._wait_ready()
            if not last_error:
                return node
            node.stop()
        raise AnvilError(f"anvil did not start: {last_error}")

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with code {self.process.returncode}: {self._output()}"
            try:
                self.rpc("eth_chainId", [])
            except (OSError, AnvilError):
                time.sleep(0.05)
                continue
            return ""
        return f"no answer on {self.url} within {_START_TIMEOUT:.0f}s: {self._output()}"

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:].decode(errors="replace").strip()

    def stop(self) -> None:
        """Terminates the process (and all its state); harmless when already stopped."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One raw JSON-RPC call; returns `result` or raises `AnvilError` with the node's error."""
        self._request_id += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._request_id, "method": method, "params": list(params)}
        )
        request = urllib.request.Request(  # noqa: S310 - the URL is our own http://127.0.0.1
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer = json.loads(response.read())
        if "error" in answer:
            raise AnvilError(f"{method}: {answer['error']}")
        return answer.get("result")

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, n: int = 1) -> None:
        """Mines `n` blocks now (whether or not automine is on)."""
        self.rpc("anvil_mine", [hex(n)])

    def set_automine(self, enabled: bool) -> None:
        """With automine off, transactions wait in the pool until `mine` (or the block time)."""
        self.rpc("evm_setAutomine", [enabled])

    def snapshot(self) -> str:
        """Saves the chain state; `revert(id)` returns to it."""
        snapshot_id: str = self.rpc("evm_snapshot")
        return snapshot_id

    def revert(self, snapshot_id: str) -> bool:
        reverted: bool = self.rpc("evm_revert", [snapshot_id])
        return reverted

    def reorg(self, depth: int, txs: Sequence[tuple[dict[str, Any], int]] = ()) -> None:
        """Replaces the last `depth` blocks by new ones holding `txs` ((tx request, block offset) pairs)."""
        self.rpc("anvil_reorg", [depth, [[tx, offset] for tx, offset in txs]])

    def rollback(self, depth: int) -> None:
        """Drops the last `depth` blocks without replacing them."""
        self.rpc("anvil_rollback", [depth])

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", [address, hex(wei)])
