"""The audit chain detects every kind of direct tampering, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update

from fleetguard.auditlog import ChainHead, append_audit_entry, chain_head, verify_chain
from fleetguard.store import Database
from fleetguard.store.tables import AuditEntryRow


def _fill(db: Database, n: int = 5) -> None:
    with db.session() as session:
        for i in range(1, n + 1):
            append_audit_entry(
                session, actor="operator:alice", action="test.change", target=f"thing:{i}",
                details={"n": i, "note": "ünïcode ok"},
            )


def _verify(db: Database, anchored: ChainHead | None = None):  # type: ignore[no-untyped-def]
    with db.session() as session:
        return verify_chain(session, anchored)


def test_untouched_chain_verifies(db: Database) -> None:
    _fill(db)
    result = _verify(db)
    assert result.ok and result.entries_checked == 5 and result.head.seq == 5


def test_entries_link_to_their_predecessor(db: Database) -> None:
    _fill(db, 3)
    with db.session() as session:
        rows = list(session.execute(select(AuditEntryRow).order_by(AuditEntryRow.seq)).scalars())
    assert rows[1].prev_hash == rows[0].entry_hash
    assert rows[2].prev_hash == rows[1].entry_hash


def test_edited_entry_is_named(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 3).values(actor="operator:mallory"))
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3


def test_edited_details_are_detected(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 2).values(details='{"n":99}'))
    assert _verify(db).first_bad_seq == 2


def test_deleted_entry_is_named(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq == 2))
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3
    assert "entry 2 is missing" in result.problems[0]


def test_deleted_newest_entry_is_detected_by_the_head(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq == 5))
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 5


def test_inserted_entry_is_named(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        # Make room after entry 2 and forge a plausible entry 3 linking to entry 2.
        rows = list(session.execute(select(AuditEntryRow).order_by(AuditEntryRow.seq.desc())).scalars())
        for row in rows:
            if row.seq >= 3:
                session.execute(
                    update(AuditEntryRow).where(AuditEntryRow.seq == row.seq).values(seq=row.seq + 1)
                )
        second = session.get(AuditEntryRow, 2)
        assert second is not None
        session.execute(insert(AuditEntryRow).values(
            seq=3, at=second.at, actor="operator:mallory", action="test.change", target="x",
            details="{}", prev_hash=second.entry_hash, entry_hash="f" * 64,
        ))
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3


def test_reordered_entries_are_named(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        # Swap the contents of entries 2 and 4, keeping each row's hashes.
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 2).values(seq=100))
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 4).values(seq=2))
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 100).values(seq=4))
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 2


def test_rewritten_tail_is_caught_by_an_anchored_head(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        anchored = chain_head(session)
        # An attacker with the database rewrites everything after entry 2 consistently.
        session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq > 2))
        from fleetguard.store.tables import AuditHeadRow

        second = session.get(AuditEntryRow, 2)
        assert second is not None
        session.execute(update(AuditHeadRow).values(seq=2, entry_hash=second.entry_hash))
        for i in range(3):
            append_audit_entry(session, actor="operator:mallory", action="x", target=f"y{i}")
    assert _verify(db).ok  # internally consistent again...
    result = _verify(db, anchored)
    assert not result.ok and result.first_bad_seq == anchored.seq  # ...but not with the anchor
