"""A lean JSON-RPC client for reading the chain: blocks and logs, batched, no formatting layers.

The mirror reads many logs; web3's per-log formatting costs more than the
transfer itself, so reads go through plain JSON-RPC and are decoded by
`events.LogDecoder`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import requests


class RpcError(Exception):
    """The node refused a request (the message is the node's)."""


class RpcUnavailableError(RpcError):
    """The node did not answer: a transient outage; retry later."""


class Rpc:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def _post(self, body: Any) -> Any:
        try:
            response = self._session.post(self.url, json=body, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        except (requests.ConnectionError, requests.Timeout) as error:
            raise RpcUnavailableError(
                f"chain node at {self.url} unreachable: {type(error).__name__}"
            ) from None
        except (requests.HTTPError, ValueError) as error:
            raise RpcUnavailableError(f"chain node at {self.url} answered badly: {error}") from None

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        answer = self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        if "error" in answer:
            raise RpcError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return answer.get("result")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one round trip; answers in the order of the calls."""
        if not calls:
            return []
        first = next(self._ids)
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(calls)
        ]
        for _ in range(len(calls) - 1):
            next(self._ids)
        answers = self._post(body)
        if not isinstance(answers, list):
            raise RpcError(f"batch refused: {answers.get('error', answers)}")
        by_id = {a.get("id"): a for a in answers}
        results = []
        for i, (method, _) in enumerate(calls):
            answer = by_id.get(first + i)
            if answer is None or "error" in answer:
                raise RpcError(f"{method}: {(answer or {}).get('error', 'no answer')}")
            results.append(answer.get("result"))
        return results

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def blocks(self, numbers: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        """Headers by number (None where the chain has no such block yet)."""
        answers = self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return dict(zip(numbers, answers, strict=True))

    def logs(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[dict[str, Any]]:
        result = self.call(
            "eth_getLogs",
            [{"address": list(addresses), "fromBlock": hex(from_block), "toBlock": hex(to_block)}],
        )
        return list(result or [])

    def close(self) -> None:
        self._session.close()
