"""`ledger serve --demo --demo-keys` (what `make run` starts): the console answers while the demo is
still loading, each stage of the demo is reported, and the keys printed at the end sign in."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.served import ledger_cli, ledger_env, ledger_serve

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
STAGES = (
    "assets: register, approve",
    "investors: register, KYC",
    "investments: place, pay or cancel",
    "transfers, a freeze, a distribution, valuations",
    "a proposal and its votes",
)


def test_serve_demo_answers_at_once_reports_each_stage_and_ends_with_the_keys(tmp_path: Path) -> None:
    env = ledger_env(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    assert ledger_cli(env, "init", cwd=tmp_path).returncode == 0
    with ledger_serve(env, tmp_path, "--demo", "--demo-keys") as served:
        first = httpx.get(f"{served.base}/console", follow_redirects=True, timeout=10)
        assert first.status_code == 200
        assert "Sign in" in first.text
        deadline = time.monotonic() + 120
        while "console http" not in served.output():
            assert served.alive(), served.output()
            assert time.monotonic() < deadline, served.output()
            time.sleep(0.2)
        output = served.log.read_text()
        for stage in STAGES:
            assert re.search(rf"{re.escape(stage)}: done \(\d+\)", output), (stage, output)
        assert output.index("demo loaded") < output.index("auditor key")
        auditor = re.search(r"auditor key: (lk_[0-9a-f]{16}_\S+)", output)
        assert auditor is not None
        with httpx.Client(base_url=served.base, timeout=10) as client:
            page = client.get("/console/sign-in")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            signed = client.post("/console/sign-in", data={"csrf": token.group(1), "key": auditor.group(1)})
            assert signed.status_code == 303
            assets = client.get("/console/assets")
            assert assets.status_code == 200
            assert "TOLL-JKT-01" in assets.text
