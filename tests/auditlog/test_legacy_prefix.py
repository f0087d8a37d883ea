"""A log written before the chain was keyed: migration 0007, then the first keyed start.

The entries already there keep their plain SHA-256. The first start with the master key
appends a keyed checkpoint naming the last unkeyed entry and its hash, so the prefix is
covered from then on (as it was then), and verification says which range that is. A
chain whose unkeyed entries no checkpoint covers does not verify, and nothing is
checkpointed over a chain that was keyed before (its keys were stripped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, insert, select, update

from fleetguard.auditlog import (
    CHECKPOINT_ACTION,
    GENESIS_HASH,
    AuditKeyring,
    append_audit_entry,
    attach_audit_keys,
    audit_key_for,
    verify_chain,
)
from fleetguard.auditlog.keyring import KEYRING_INFO
from fleetguard.auditlog.models import ChainVerification
from fleetguard.auditlog.service import compute_entry_hash
from fleetguard.core.clock import utcnow
from fleetguard.keys import MasterKey
from fleetguard.store import Database, current_revision, open_database, upgrade_database
from fleetguard.store.migrate import head_revision
from fleetguard.store.tables import AuditEntryRow, AuditHeadRow

LEGACY = 5
MASTER = MasterKey(b"m" * 32)
_ENTRIES: Table = AuditEntryRow.__table__  # type: ignore[assignment]
_HEAD: Table = AuditHeadRow.__table__  # type: ignore[assignment]


def _write_legacy(db: Database, first: int, last: int, prev: str) -> str:
    """Entries chained by plain SHA-256 as the unkeyed code wrote them (no key_id given)."""
    start = utcnow() - timedelta(days=30)
    with db.engine.begin() as conn:
        for seq in range(first, last + 1):
            row = {"seq": seq, "at": start + timedelta(minutes=seq), "actor": "operator:alice",
                   "action": "device.add", "target": f"device:{seq}",
                   "details": json.dumps({"n": seq}, separators=(",", ":"))}
            entry_hash = compute_entry_hash(**row, prev_hash=prev)  # type: ignore[arg-type]
            conn.execute(insert(_ENTRIES).values(**row, prev_hash=prev, entry_hash=entry_hash))
            prev = entry_hash
        conn.execute(update(_HEAD).values(seq=last, entry_hash=prev))
    return prev


@pytest.fixture
def legacy(database_url: str) -> Iterator[Database]:
    """A database at 0006 with entries 1..LEGACY, then migrated past 0007 to the head (no
    key yet)."""
    db = open_database(database_url)
    upgrade_database(db, "0006")
    _write_legacy(db, 1, LEGACY, GENESIS_HASH)
    upgrade_database(db)
    assert current_revision(db) == head_revision()
    yield db
    db.dispose()


def _verify(db: Database) -> ChainVerification:
    with db.read_session() as session:
        return verify_chain(session)


def _rows(db: Database) -> list[AuditEntryRow]:
    with db.read_session() as session:
        return list(session.execute(select(AuditEntryRow).order_by(AuditEntryRow.seq)).scalars())


def test_first_keyed_start_checkpoints_the_unkeyed_prefix(legacy: Database) -> None:
    assert all(row.key_id is None for row in _rows(legacy))
    attach_audit_keys(legacy, MASTER)
    rows = _rows(legacy)
    assert len(rows) == LEGACY + 1
    checkpoint = rows[-1]
    assert checkpoint.action == CHECKPOINT_ACTION
    assert checkpoint.key_id == MASTER.key_id.hex()
    assert json.loads(checkpoint.details) == {
        "unkeyed_through": LEGACY, "unkeyed_head": rows[LEGACY - 1].entry_hash,
        "unkeyed_verified": True,
    }
    with legacy.session() as session:
        append_audit_entry(session, actor="system", action="test.after", target="x")
    result = _verify(legacy)
    assert result.ok, result.problems
    assert result.entries_checked == LEGACY + 2
    assert result.unkeyed_through == LEGACY
    assert result.key_ids == [MASTER.key_id.hex()]


def test_the_checkpoint_is_made_once(legacy: Database, database_url: str) -> None:
    attach_audit_keys(legacy, MASTER)
    again = open_database(database_url)
    try:
        attach_audit_keys(again, MASTER)
    finally:
        again.dispose()
    assert [r.action for r in _rows(legacy)].count(CHECKPOINT_ACTION) == 1


def test_an_unkeyed_prefix_without_checkpoint_does_not_verify(legacy: Database) -> None:
    with legacy.read_session() as session:  # the key, but the chain was never checkpointed
        result = verify_chain(session, keyring=_keyring())
    assert not result.ok and result.first_bad_seq == 1
    assert f"entries 1..{LEGACY} are unkeyed and no keyed checkpoint covers them" in (
        result.problems[0])


def _keyring() -> AuditKeyring:
    return AuditKeyring(audit_key_for(MASTER))


def test_rewriting_the_unkeyed_prefix_after_the_checkpoint_is_detected(legacy: Database) -> None:
    attach_audit_keys(legacy, MASTER)
    # The attacker rewrites entry 2 and recomputes 2..LEGACY with plain SHA-256, which is
    # all those entries ever had; the keyed checkpoint still commits to the old hash.
    with legacy.engine.begin() as conn:
        rows = list(conn.execute(select(_ENTRIES).where(_ENTRIES.c.seq <= LEGACY)
                                 .order_by(_ENTRIES.c.seq)))
        prev = rows[0].entry_hash
        for row in rows[1:]:
            details = '{"n":99}' if row.seq == 2 else row.details
            entry_hash = compute_entry_hash(seq=row.seq, at=row.at, actor=row.actor,
                                            action=row.action, target=row.target,
                                            details=details, prev_hash=prev)
            conn.execute(update(_ENTRIES).where(_ENTRIES.c.seq == row.seq)
                         .values(details=details, prev_hash=prev, entry_hash=entry_hash))
            prev = entry_hash
    result = _verify(legacy)
    assert not result.ok and result.first_bad_seq == LEGACY + 1
    assert f"entry {LEGACY + 1} does not link" in result.problems[0]


def test_a_broken_prefix_is_recorded_by_the_checkpoint_and_still_fails(
    legacy: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with legacy.engine.begin() as conn:  # broken before the upgrade, unnoticed
        conn.execute(update(_ENTRIES).where(_ENTRIES.c.seq == 3).values(actor="mallory"))
    with caplog.at_level(logging.ERROR, logger="fleetguard.auditlog"):
        attach_audit_keys(legacy, MASTER)
    assert "the unkeyed entries do not verify" in caplog.text
    details = json.loads(_rows(legacy)[-1].details)
    assert details["unkeyed_verified"] is False
    assert "entry 3 was altered" in details["unkeyed_problems"][0]
    result = _verify(legacy)
    assert not result.ok and result.first_bad_seq == 3


def test_no_checkpoint_over_a_chain_that_exported_a_signed_head(
    legacy: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The keys of a keyed chain were stripped and it was recomputed as unkeyed; the data
    # dir still holds the signed head this installation exported: no blessing.
    exported = tmp_path / "audit-head.json"
    exported.write_text("{}")
    with caplog.at_level(logging.ERROR, logger="fleetguard.auditlog"):
        attach_audit_keys(legacy, MASTER, exported_head=exported)
    assert "no checkpoint was made" in caplog.text
    assert len(_rows(legacy)) == LEGACY
    result = _verify(legacy)
    assert not result.ok and result.first_bad_seq == 1


def test_keyed_entries_after_an_unkeyed_prefix_need_the_checkpoint(legacy: Database) -> None:
    # Keyed entries appended by a process that skipped the checkpoint (or after keys were
    # stripped from the older entries) do not make the unkeyed ones verify.
    legacy.share_with_sessions(KEYRING_INFO, _keyring())
    with legacy.session() as session:
        append_audit_entry(session, actor="system", action="test.after", target="x")
    result = _verify(legacy)
    assert not result.ok and result.first_bad_seq == LEGACY + 1
    assert "is not a keyed checkpoint over them" in result.problems[0]
