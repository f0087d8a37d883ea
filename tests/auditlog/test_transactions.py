"""Entries belong to the transaction that records them, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from fleetguard.auditlog import append_audit_entry, chain_head, list_audit_entries, verify_chain
from fleetguard.store import Database


def test_entries_of_a_failed_transaction_never_land(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        append_audit_entry(session, actor="operator:alice", action="test.change", target="a")
        raise RuntimeError("the change failed")
    with db.read_session() as session:
        assert list_audit_entries(session) == []
        assert chain_head(session).seq == 0


def test_a_transaction_reads_its_own_entries(db: Database) -> None:
    with db.session() as session:
        append_audit_entry(session, actor="operator:alice", action="test.change", target="a")
        entries = list_audit_entries(session)
        assert [(e.seq, e.target) for e in entries] == [(1, "a")]
        append_audit_entry(session, actor="operator:alice", action="test.change", target="b")
    with db.read_session() as session:
        assert [e.target for e in list_audit_entries(session)] == ["a", "b"]
        assert verify_chain(session).ok


def test_entries_keep_the_order_they_were_recorded_in(db: Database) -> None:
    with db.session() as session:
        for target in ("first", "second", "third"):
            append_audit_entry(session, actor="operator:alice", action="test.change",
                               target=target)
    with db.read_session() as session:
        entries = list_audit_entries(session)
    assert [e.target for e in entries] == ["first", "second", "third"]
    assert entries[0].at <= entries[1].at <= entries[2].at


def test_a_session_used_after_a_rollback_starts_clean(db: Database) -> None:
    session = db.sessions()
    try:
        append_audit_entry(session, actor="operator:alice", action="test.change", target="lost")
        session.rollback()
        append_audit_entry(session, actor="operator:alice", action="test.change", target="kept")
        session.commit()
    finally:
        session.close()
    with db.read_session() as session:
        assert [e.target for e in list_audit_entries(session)] == ["kept"]
