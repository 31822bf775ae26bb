"""Several `ledger serve` processes on one PostgreSQL, transfers racing on one asset (SPEC 9):
no valid command rejected, balances equal a reference model, the hash chain verifies."""

from __future__ import annotations

import random
import threading
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.e2e.served import create_key, ledger_cli, ledger_env, ledger_serve
from tests.support import ASSET_TERMS, wallet_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

INVESTORS = [f"inv-{n}" for n in range(6)]
START = 40
TRANSFERS_PER_CLIENT = 40


def command(base: str, key: str, path: str, body: dict[str, object]) -> httpx.Response:
    response = httpx.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert response.status_code in (200, 201), response.text
    return response


def set_up(base: str, key: str) -> str:
    asset_id = str(ASSET_TERMS["asset_id"])
    command(base, key, "/v1/assets", ASSET_TERMS)
    command(base, key, f"/v1/assets/{asset_id}/approve", {})
    command(base, key, f"/v1/assets/{asset_id}/offering", {"open": True})
    unit_price = int(str(ASSET_TERMS["unit_price"]))
    decimals = int(str(ASSET_TERMS["decimals"]))
    for investor_id in INVESTORS:
        command(
            base,
            key,
            "/v1/investors",
            {
                "investor_id": investor_id,
                "country": "ID",
                "wallet": wallet_for(investor_id),
                "accredited": False,
            },
        )
        command(base, key, f"/v1/investors/{investor_id}/kyc", {"status": "approved"})
        amount = -(-START * unit_price // 10**decimals)
        placed = command(
            base, key, "/v1/investments", {"investor_id": investor_id, "asset_id": asset_id, "amount": amount}
        ).json()
        command(base, key, f"/v1/investments/{placed['investment_id']}/confirm-payment", {"payment_ref": "p"})
    return asset_id


@pytest.mark.parametrize("processes", [2, 4])
def test_serve_processes_racing_on_one_asset_keep_every_valid_transfer(
    tmp_path: Path, pg_schema_url: str, processes: int
) -> None:
    env = ledger_env(pg_schema_url)
    done = ledger_cli(env, "init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = create_key(env, "admin", tmp_path)
    outcomes: list[tuple[str, str, int, int]] = []  # sender, receiver, quantity, status
    lock = threading.Lock()
    with ExitStack() as stack:
        servers = [stack.enter_context(ledger_serve(env, tmp_path)) for _ in range(processes)]
        asset_id = set_up(servers[0].base, key)

        def client(number: int) -> None:
            rng = random.Random(number)
            base = servers[number % processes].base
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
                for sequence in range(TRANSFERS_PER_CLIENT):
                    sender, receiver = rng.sample(INVESTORS, 2)
                    quantity = rng.randint(1, 4)
                    response = http.post(
                        "/v1/transfers",
                        json={
                            "asset_id": asset_id,
                            "from_investor_id": sender,
                            "to_investor_id": receiver,
                            "quantity": str(quantity),
                        },
                        headers={"Idempotency-Key": f"race-{number}-{sequence}"},
                    )
                    with lock:
                        outcomes.append((sender, receiver, quantity, response.status_code))
                    if response.status_code not in (201, 422):
                        raise AssertionError(response.text)
                    if response.status_code == 422:
                        assert response.json()["code"] == "insufficient_balance", response.text

        threads = [threading.Thread(target=client, args=(n,)) for n in range(2 * processes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        head = httpx.get(f"{servers[0].base}/readyz", timeout=30).json()["head_position"]
        # The read waits 5 s (the server's own bound) for the read models to reach the head;
        # with the processes' runners starved by the load, a catch-up of our own gets them there.
        projected = ledger_cli(env, "project", "--once", cwd=tmp_path)
        assert projected.returncode == 0, projected.stdout + projected.stderr
        read = httpx.get(
            f"{servers[-1].base}/v1/assets/{asset_id}/cap-table",
            params={"min_position": head},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert read.status_code == 200, read.text
        table = read.json()
        for server in servers:
            assert server.stop() == 0, server.output()

    assert len(outcomes) == 2 * processes * TRANSFERS_PER_CLIENT
    assert all(status in (201, 422) for *_, status in outcomes)  # no concurrency rejection, no 5xx
    expected = dict.fromkeys(INVESTORS, START)
    for sender, receiver, quantity, status in outcomes:
        if status == 201:
            expected[sender] -= quantity
            expected[receiver] += quantity
    holdings = {h["investor_id"]: int(h["quantity"]) for h in table["holders"]}
    assert holdings == {k: v for k, v in expected.items() if v}
    verified = ledger_cli(env, "verify", "--json", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
