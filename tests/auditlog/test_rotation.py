"""Master key rotation: old entries stay verifiable and stay protected, keys never come back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from fleetguard.auditlog import (
    ROTATION_ACTION,
    append_audit_entry,
    attach_audit_keys,
    load_audit_keyring,
    retire_audit_key,
    verify_chain,
)
from fleetguard.cli.main import app
from fleetguard.core.config import load_settings
from fleetguard.install import init_installation, open_installation_database, rotate_master_key
from fleetguard.keys import MasterKey, load_master_key
from fleetguard.keys.stored import rewrap_stored_secrets
from fleetguard.store import Database, open_database
from fleetguard.store.tables import AuditEntryRow

runner = CliRunner()


def _append(db: Database, n: int, actor: str = "operator:alice") -> None:
    with db.session() as session:
        for i in range(n):
            append_audit_entry(session, actor=actor, action="test.change", target=f"t{i}")


def _rotate(db: Database, old: MasterKey, new: MasterKey) -> None:
    """What rotate_master_key does to the database, without an installation around it."""
    with db.session() as session:
        rewrap_stored_secrets(session, old, new)
        retire_audit_key(session, old, new)
        append_audit_entry(session, actor="system", action=ROTATION_ACTION, target="master-key",
                           details={"old_key_id": old.key_id.hex(),
                                    "new_key_id": new.key_id.hex()})
    attach_audit_keys(db, new)


def _verify(db: Database):  # type: ignore[no-untyped-def]
    with db.read_session() as session:
        return verify_chain(session)


def _tamper(db: Database, seq: int) -> None:
    with db.session() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == seq)
                        .values(target="forged"))


def test_rotate_append_and_the_whole_chain_verifies(
    db: Database, database_url: str, master_key: MasterKey
) -> None:
    b, c = MasterKey(b"b" * 32), MasterKey(b"c" * 32)
    _append(db, 3)
    _rotate(db, master_key, b)
    _append(db, 2)
    _rotate(db, b, c)
    _append(db, 2)
    result = _verify(db)
    assert result.ok, result.problems
    assert result.entries_checked == 9
    assert result.key_ids == [master_key.key_id.hex(), b.key_id.hex(), c.key_id.hex()]
    # A fresh process with only the newest master key holds every retired key too.
    fresh = open_database(database_url)
    try:
        attach_audit_keys(fresh, c)
        with fresh.read_session() as session:
            keyring = load_audit_keyring(session, c)
            assert [k.key_id for k in keyring.keys] == result.key_ids
            assert verify_chain(session).ok
    finally:
        fresh.dispose()


@pytest.mark.parametrize("seq", [2, 4, 6])  # under the first key, the rotation entry, the second
def test_tampering_before_or_after_a_rotation_is_detected(
    db: Database, master_key: MasterKey, seq: int
) -> None:
    _append(db, 3)
    _rotate(db, master_key, MasterKey(b"b" * 32))  # entry 4
    _append(db, 3)
    _tamper(db, seq)
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == seq


def test_a_process_still_on_the_old_key_is_caught_once_the_new_key_took_over(
    db: Database, database_url: str, master_key: MasterKey
) -> None:
    stale = open_database(database_url)  # a server that was not restarted after rotation
    try:
        attach_audit_keys(stale, master_key)
        _append(db, 2)
        _rotate(db, master_key, MasterKey(b"b" * 32))  # entry 3
        _append(stale, 1)  # entry 4, old key: still before any new-key entry
        assert _verify(db).ok
        _append(db, 1)  # entry 5, new key
        _append(stale, 1)  # entry 6, the retired key again
        result = _verify(db)
        assert not result.ok and result.first_bad_seq == 6
        assert "retired at entry 5" in result.problems[0]
    finally:
        stale.dispose()


def test_a_key_change_without_a_rotation_entry_is_refused(
    db: Database, master_key: MasterKey
) -> None:
    b = MasterKey(b"b" * 32)
    _append(db, 2)
    with db.session() as session:  # the old key kept, but no rotation recorded in the chain
        retire_audit_key(session, master_key, b)
    attach_audit_keys(db, b)
    _append(db, 1)
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3
    assert "with no master key rotation entry before it" in result.problems[0]


def _installation(tmp_path: Path, database_url: str | None) -> Path:
    settings = load_settings(tmp_path / "data", database_url)
    init_installation(settings)
    return settings.data_dir


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_rotate_master_key_keeps_the_installation_chain_verifiable(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    settings = load_settings(_installation(tmp_path, url), url)
    old = load_master_key(settings)
    db = open_installation_database(settings)
    try:
        _append(db, 2)  # entries 3, 4 (init wrote 1, 2)
        new, _ = rotate_master_key(settings, db)  # entry 5, under the old key
        _append(db, 2)  # entries 6, 7, under the new key (db moved to it)
    finally:
        db.dispose()
    assert load_master_key(settings).key_id == new.key_id
    reopened = open_installation_database(settings)  # from the new key file alone
    try:
        result = _verify(reopened)
        assert result.ok, result.problems
        assert result.entries_checked == 7
        assert result.key_ids == [old.key_id.hex(), new.key_id.hex()]
        _tamper(reopened, 1)  # the installation's first entry, under the retired key
        result = _verify(reopened)
        assert not result.ok and result.first_bad_seq == 1
    finally:
        reopened.dispose()


def test_cli_rotate_then_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    rotated = runner.invoke(app, ["keys", "rotate-master", "--data-dir", str(data)])
    assert rotated.exit_code == 0, rotated.output
    add = runner.invoke(app, ["operator", "add", "bob", "--role", "auditor", "--data-dir",
                              str(data)], input="correct horse battery staple 42\n")
    assert add.exit_code == 0, add.output
    result = runner.invoke(app, ["audit-log", "verify", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "audit log intact: 4 entries" in result.output
    assert "keyed with audit key(s) " in result.output and ", " in result.output
