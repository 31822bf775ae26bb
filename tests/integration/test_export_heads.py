"""Signed tree heads travel with the history (SPEC 4.7): `ledger export` writes them after the
events, `ledger import` keeps them after checking each against the imported history, and
refuses the whole file, writing nothing, when one does not match."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from adapters.cli import app as cli
from ledger.application import LedgerApplication
from ledger.config import store_env
from ledger.transparency import TreeHead, sign, verify_against
from tests.integration.test_store_integrity import scenario

KEY = Ed25519PrivateKey.generate()


def exported(app: LedgerApplication, store_url: str, path: Path) -> list[str]:
    scenario(app)
    app.transparency.sign_head(KEY, app.clock())
    app.transfer("TOLL-JKT-01", "bob", "alice", 3)
    app.transparency.sign_head(KEY, app.clock())
    result = CliRunner().invoke(cli, ["export", str(path)], env={"LEDGER_DATABASE_URL": store_url})
    assert result.exit_code == 0, result.output
    return path.read_text().splitlines(keepends=True)


def imported(path: Path, target: Path) -> tuple[int, str]:
    env = {"LEDGER_DATABASE_URL": f"sqlite:///{target}"}
    result = CliRunner().invoke(cli, ["import", str(path)], env=env)
    return result.exit_code, result.output


def test_export_writes_the_signed_heads_and_import_keeps_them(
    app: LedgerApplication, store_url: str, tmp_path: Path
) -> None:
    lines = exported(app, store_url, tmp_path / "history.jsonl")
    heads = [json.loads(line) for line in lines if line.startswith('{"kind":"tree_head"')]
    assert [h["tree_size"] for h in heads] == sorted(h.tree_size for h in app.transparency.signed_heads())
    assert all(line.startswith('{"position"') for line in lines[: len(lines) - len(heads)])  # heads last

    code, output = imported(tmp_path / "history.jsonl", tmp_path / "copy.sqlite3")
    assert code == 0, output
    copy = LedgerApplication(store_env(f"sqlite:///{tmp_path / 'copy.sqlite3'}"))
    try:
        assert copy.transparency.signed_heads() == app.transparency.signed_heads()
        for head in copy.transparency.signed_heads():
            assert verify_against(copy.admin, head, KEY.public_key()).ok
    finally:
        copy.close()


def test_an_export_without_heads_still_imports(
    app: LedgerApplication, store_url: str, tmp_path: Path
) -> None:
    lines = exported(app, store_url, tmp_path / "history.jsonl")
    (tmp_path / "plain.jsonl").write_text("".join(line for line in lines if '"kind":"tree_head"' not in line))
    code, output = imported(tmp_path / "plain.jsonl", tmp_path / "copy.sqlite3")
    assert code == 0, output


def test_a_head_that_does_not_match_the_history_is_refused_and_nothing_is_written(
    app: LedgerApplication, store_url: str, tmp_path: Path
) -> None:
    """A head validly signed, but over another history (here the root of one event fewer)."""
    lines = exported(app, store_url, tmp_path / "history.jsonl")
    last = TreeHead.from_dict(json.loads(lines[-1]))
    _, other_root = app.transparency.root(last.tree_size - 1)
    forged = sign(KEY, last.tree_size, other_root, app.clock())
    line = json.dumps({"kind": "tree_head", **forged.as_dict()}, separators=(",", ":")) + "\n"
    (tmp_path / "forged.jsonl").write_text("".join(lines) + line)
    target = tmp_path / "copy.sqlite3"
    code, output = imported(tmp_path / "forged.jsonl", target)
    assert code == 1
    assert "does not match the imported history" in output

    copy = LedgerApplication(store_env(f"sqlite:///{target}"))
    try:
        assert copy.admin.head_position() == 0
        assert copy.transparency.signed_heads() == []
    finally:
        copy.close()

    beyond = sign(KEY, last.tree_size + 5, other_root, app.clock())
    line = json.dumps({"kind": "tree_head", **beyond.as_dict()}, separators=(",", ":")) + "\n"
    (tmp_path / "beyond.jsonl").write_text("".join(lines) + line)
    code, output = imported(tmp_path / "beyond.jsonl", tmp_path / "other.sqlite3")
    assert code == 1
    assert f"covers {last.tree_size + 5} events" in output
