"""Entries are keyed from the master key; a database opened without it writes nothing."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fleetguard.auditlog import (
    AuditKeyMissingError,
    append_audit_entry,
    attach_audit_keys,
    audit_key_for,
    audit_keys_attached,
    verify_chain,
)
from fleetguard.auditlog.service import compute_entry_hash, compute_entry_mac
from fleetguard.core.config import Settings
from fleetguard.install import open_installation_database
from fleetguard.keys import MasterKey
from fleetguard.keys.errors import MasterKeyMissingError
from fleetguard.store import Database, open_database, upgrade_database
from fleetguard.store.tables import AuditEntryRow


def _count(db: Database) -> int:
    with db.read_session() as session:
        return session.execute(select(func.count()).select_from(AuditEntryRow)).scalar_one()


def test_entries_are_hmacs_under_the_audit_key_and_name_it(
    db: Database, master_key: MasterKey
) -> None:
    with db.session() as session:
        append_audit_entry(session, actor="operator:alice", action="test.change", target="x",
                           details={"n": 1})
    with db.read_session() as session:
        row = session.get(AuditEntryRow, 1)
        assert row is not None
        assert row.key_id == master_key.key_id.hex()
        fields: dict[str, Any] = {
            "seq": row.seq, "at": row.at, "actor": row.actor, "action": row.action,
            "target": row.target, "details": row.details, "prev_hash": row.prev_hash}
        assert row.entry_hash == compute_entry_mac(audit_key_for(master_key), **fields)
        assert row.entry_hash != compute_entry_hash(**fields)  # not plain SHA-256
        raw = hmac.new(master_key.material, row.details.encode(), hashlib.sha256).hexdigest()
        assert row.entry_hash != raw
        assert verify_chain(session).ok


def test_appending_without_the_key_fails_loudly_and_writes_nothing(database_url: str) -> None:
    db = open_database(database_url)
    try:
        upgrade_database(db)
        assert not audit_keys_attached(db)
        with pytest.raises(AuditKeyMissingError), db.session() as session:
            append_audit_entry(session, actor="system", action="test.change", target="x")
        assert _count(db) == 0
        with pytest.raises(AuditKeyMissingError), db.read_session() as session:
            verify_chain(session)
    finally:
        db.dispose()


def test_the_key_reaches_every_session_once_attached(database_url: str) -> None:
    db = open_database(database_url)
    try:
        upgrade_database(db)
        attach_audit_keys(db, MasterKey(b"k" * 32))
        assert audit_keys_attached(db)
        for _ in range(3):  # new sessions, and writes from read-then-write units alike
            with db.session() as session:
                append_audit_entry(session, actor="system", action="test.change", target="x")
        with db.read_session() as session:
            result = verify_chain(session)
        assert result.ok and result.entries_checked == 3
        assert result.key_ids == [MasterKey(b"k" * 32).key_id.hex()]
    finally:
        db.dispose()


def test_an_installation_without_its_master_key_does_not_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'fg.db'}")
    with pytest.raises(MasterKeyMissingError):
        open_installation_database(settings)


def test_opened_with_another_master_key_the_chain_does_not_verify(
    db: Database, database_url: str
) -> None:
    with db.session() as session:
        append_audit_entry(session, actor="system", action="test.change", target="x")
    other = open_database(database_url)
    try:
        attach_audit_keys(other, MasterKey(b"o" * 32))
        with other.read_session() as session:
            result = verify_chain(session)
        assert not result.ok and result.first_bad_seq == 1
        assert "neither this installation's nor a retired one" in result.problems[0]
    finally:
        other.dispose()
