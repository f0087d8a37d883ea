"""`fleetguard audit-log verify` exits non-zero and names the first bad entry."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from typer.testing import CliRunner

from fleetguard.cli.main import app
from fleetguard.store import open_database
from fleetguard.store.tables import AuditEntryRow

runner = CliRunner()


def _init(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    result = runner.invoke(app, ["init", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    return data


def test_verify_passes_on_a_fresh_installation(tmp_path: Path) -> None:
    data = _init(tmp_path)
    result = runner.invoke(app, ["audit-log", "verify", "--data-dir", str(data)])
    assert result.exit_code == 0
    assert "audit log intact: 2 entries" in result.output


def test_verify_fails_and_names_the_entry_after_tampering(tmp_path: Path) -> None:
    data = _init(tmp_path)
    db = open_database(f"sqlite:///{data / 'fleetguard.db'}")
    with db.session() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 1).values(target="forged"))
    db.dispose()
    result = runner.invoke(app, ["audit-log", "verify", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert "first bad entry 1" in result.output


def test_head_prints_seq_and_hash_that_verify_accepts(tmp_path: Path) -> None:
    data = _init(tmp_path)
    head = runner.invoke(app, ["audit-log", "head", "--data-dir", str(data)]).output.strip()
    seq, _, digest = head.partition(":")
    assert seq == "2" and len(digest) == 64
    result = runner.invoke(app, ["audit-log", "verify", "--expect-head", head, "--data-dir", str(data)])
    assert result.exit_code == 0
