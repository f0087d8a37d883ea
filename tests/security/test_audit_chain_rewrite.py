"""Someone with write access to the database rewrites an audit entry and recomputes the chain.

What the outside probe did (issue 12, hole 4): change an entry's details, then recompute
the hash of that entry and of every later one, and move the recorded head, exactly as the
unkeyed chain computed them (plain SHA-256 over the entry and the previous hash). The
unkeyed chain then verified as intact. Keyed, it must not: the attacker has the database
but not the master key, so whatever they recompute (plain SHA-256, SHA-256 with the key
ids removed, an HMAC under a key of their own) fails verification, naming the first entry
they touched. On SQLite and PostgreSQL, and through `fleetguard audit-log verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from typer.testing import CliRunner

from fleetguard.auditlog import append_audit_entry, verify_chain
from fleetguard.cli.main import app
from fleetguard.store import Database, open_database
from fleetguard.store.tables import AuditEntryRow, AuditHeadRow

runner = CliRunner()
Hasher = Callable[[list[object]], str]


def _old_sha256(fields: list[object]) -> str:
    """The unkeyed chain's entry hash, as the attacker reimplements it."""
    return hashlib.sha256(
        json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def _fill(db: Database, n: int = 8) -> None:
    with db.session() as session:
        for i in range(1, n + 1):
            append_audit_entry(session, actor="operator:alice", action="device.quarantine",
                               target=f"device:{i}", details={"reason": f"finding {i}"})


def _rewrite(
    db: Database, seq: int, *, hasher: Hasher = _old_sha256,
    key_id: Callable[[Any], str | None] = lambda row: row._mapping.get("key_id"),
    include_key_id: bool = False,
    details: str = '{"reason":"routine maintenance"}',
) -> None:
    """Change entry ``seq``'s details and recompute it and every later entry, and the head."""
    with db.session() as session:
        rows = list(session.execute(
            select(AuditEntryRow.__table__).order_by(AuditEntryRow.seq)
        ))
        prev = rows[seq - 2].entry_hash if seq > 1 else "0" * 64
        for row in rows[seq - 1:]:
            new_details = details if row.seq == seq else row.details
            new_key_id = key_id(row)
            at: datetime = row.at
            fields: list[object] = [row.seq, at.isoformat(timespec="microseconds"), row.actor,
                                    row.action, row.target, new_details, prev]
            if include_key_id and new_key_id is not None:
                fields.append(new_key_id)
            entry_hash = hasher(fields)
            values = {"details": new_details, "prev_hash": prev, "entry_hash": entry_hash}
            if "key_id" in row._mapping:  # (the unkeyed schema had no such column)
                values["key_id"] = new_key_id
            session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == row.seq)
                            .values(**values))
            prev = entry_hash
        session.execute(update(AuditHeadRow).values(seq=rows[-1].seq, entry_hash=prev))


def _verify(db: Database):  # type: ignore[no-untyped-def]
    with db.session() as session:
        return verify_chain(session)


def test_rewritten_entry_with_recomputed_chain_is_detected(db: Database) -> None:
    _fill(db)
    assert _verify(db).ok
    _rewrite(db, 4)  # exactly what the probe did: plain SHA-256, as the old code computed
    with db.session() as session:
        assert session.get(AuditEntryRow, 4).details == '{"reason":"routine maintenance"}'  # type: ignore[union-attr]
    result = _verify(db)
    assert not result.ok
    assert result.first_bad_seq == 4
    assert "entry 4 was altered" in result.problems[0]


def test_rewrite_that_also_drops_the_key_ids_is_detected(db: Database) -> None:
    _fill(db)
    _rewrite(db, 5, key_id=lambda row: None)  # "these were written before the chain was keyed"
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 5
    assert "unkeyed but follows keyed entries" in result.problems[0]


def test_whole_chain_recomputed_as_unkeyed_does_not_verify(db: Database) -> None:
    _fill(db)
    _rewrite(db, 1, key_id=lambda row: None)  # every entry made to look pre-keying
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 1
    assert "no keyed checkpoint covers them" in result.problems[0]


def test_rewrite_with_a_key_of_the_attackers_own_is_detected(db: Database) -> None:
    _fill(db)
    theirs = os.urandom(32)

    def attacker_hmac(fields: list[object]) -> str:
        material = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        return hmac.new(theirs, material, hashlib.sha256).hexdigest()

    _rewrite(db, 3, hasher=attacker_hmac, include_key_id=True)  # the installation's key id
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3
    _rewrite(db, 3, hasher=attacker_hmac, include_key_id=True, key_id=lambda row: "a" * 16)
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3
    assert "neither this installation's nor a retired one" in result.problems[0]


def test_cli_verify_names_the_rewritten_entry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    db = open_database(f"sqlite:///{data / 'fleetguard.db'}")  # the database alone, no key
    try:
        _rewrite(db, 1, details='{"database":"sqlite","master_key_id":"forged"}')
    finally:
        db.dispose()
    result = runner.invoke(app, ["audit-log", "verify", "--data-dir", str(data)])
    assert result.exit_code == 1, result.output
    assert "first bad entry 1" in result.output


def test_stripping_every_key_is_not_checkpointed_at_the_next_start(tmp_path: Path) -> None:
    # The whole chain recomputed as if written before keying: a start with the master key
    # must not checkpoint it as a legacy prefix, since init left a signed head in the data
    # dir; verification fails and the rewrite stays visible.
    data = tmp_path / "data"
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    assert (data / "audit-head.json").exists()
    db = open_database(f"sqlite:///{data / 'fleetguard.db'}")
    try:
        _rewrite(db, 1, key_id=lambda row: None,
                 details='{"database":"sqlite","master_key_id":"forged"}')
    finally:
        db.dispose()
    for _ in range(2):  # and it stays that way, start after start
        result = runner.invoke(app, ["audit-log", "verify", "--no-exported-head",
                                     "--data-dir", str(data)])
        assert result.exit_code == 1, result.output
        assert "first bad entry 1" in result.output
        assert "no keyed checkpoint covers them" in result.output
