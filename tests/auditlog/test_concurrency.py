"""Concurrent appends keep one unbroken chain, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fleetguard.auditlog import append_audit_entry, verify_chain
from fleetguard.store import Database


def test_parallel_appends_form_one_valid_chain(db: Database) -> None:
    def append_many(worker: int) -> None:
        for i in range(15):
            with db.session() as session:
                append_audit_entry(session, actor=f"worker:{worker}", action="test.parallel",
                                   target=f"thing:{i}")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(append_many, range(6)))
    with db.session() as session:
        result = verify_chain(session)
    assert result.ok, result.problems
    assert result.entries_checked == 90
