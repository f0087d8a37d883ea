"""Append and verify the hash chain.

Each entry's hash covers its sequence number, time, actor, action, target, details and
the previous entry's hash, so editing, deleting, inserting or reordering rows breaks
the chain at the first row touched. Deleting the newest rows leaves a shorter valid
chain: the ``audit_head`` row and an externally anchored head (``fleetguard audit-log
head``) catch that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, func, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from fleetguard.auditlog.models import AuditEntry, ChainHead, ChainVerification
from fleetguard.core.clock import utcnow
from fleetguard.store.tables import AuditEntryRow, AuditHeadRow

GENESIS_HASH = "0" * 64
_HEAD_ID = 1
_VERIFY_BATCH = 1000
_HEAD_CACHE = "fleetguard.audit_head"
_PENDING = "fleetguard.audit_pending"


def _canonical_details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_entry_hash(
    *, seq: int, at: datetime, actor: str, action: str, target: str, details: str, prev_hash: str
) -> str:
    material = json.dumps(
        [seq, at.isoformat(timespec="microseconds"), actor, action, target, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


_ENTRIES: Table = AuditEntryRow.__table__  # type: ignore[assignment]
_HEAD: Table = AuditHeadRow.__table__  # type: ignore[assignment]
# Built once: appends sit on hot paths (enrollment), where building and caching a
# statement per call costs more than running it.
_SELECT_HEAD = (select(_HEAD.c.seq, _HEAD.c.entry_hash)
                .where(_HEAD.c.id == _HEAD_ID).with_for_update())
_INSERT_ENTRY = insert(_ENTRIES)
_MOVE_HEAD = (update(_HEAD).where(_HEAD.c.id == _HEAD_ID)
              .values(seq=bindparam("new_seq"), entry_hash=bindparam("new_hash")))


def _locked_head(session: Session) -> list[Any]:
    """[seq, entry_hash] of the chain head, locked for this transaction.

    One lock per transaction: later writes in the same transaction reuse the cached head.
    """
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_CACHE)
    if cached is not None and cached[0] is transaction:
        return cast(list[Any], cached[1])
    conn = session.connection()
    row = conn.execute(_SELECT_HEAD).first()
    if row is None:  # created by migration 0001; a hand-made database may lack it
        conn.execute(insert(_HEAD).values(id=_HEAD_ID, seq=0, entry_hash=GENESIS_HASH))
        head = [0, GENESIS_HASH]
    else:
        head = [row.seq, row.entry_hash]
    session.info[_HEAD_CACHE] = (transaction, head)
    return head


def append_audit_entry(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Record an entry in the caller's transaction: it lands if and only if the change does.

    Entries are chained and written as the transaction commits (or when this session reads
    the log), so the lock on the chain head, which every writer of the fleet needs, is held
    for the last moment of a transaction rather than all of it.
    """
    session.connection()  # in a transaction, so a rollback forgets the entry
    pending: list[tuple[datetime, str, str, str, str]] = session.info.setdefault(_PENDING, [])
    pending.append((utcnow(), actor, action, target, _canonical_details(details or {})))


def write_pending_entries(session: Session) -> None:
    """Chain and write the entries this transaction has recorded so far."""
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    head = _locked_head(session)
    seq, prev = head
    rows = []
    for at, actor, action, target, details_text in pending:
        seq += 1
        entry_hash = compute_entry_hash(
            seq=seq, at=at, actor=actor, action=action, target=target,
            details=details_text, prev_hash=prev,
        )
        rows.append({"seq": seq, "at": at, "actor": actor, "action": action,
                     "target": target, "details": details_text, "prev_hash": prev,
                     "entry_hash": entry_hash})
        prev = entry_hash
    conn = session.connection()
    conn.execute(_INSERT_ENTRY, rows)
    conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
    head[0], head[1] = seq, prev


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    write_pending_entries(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_on_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a rolled-back transaction's entries never happened
        session.info.pop(_PENDING, None)
        session.info.pop(_HEAD_CACHE, None)


def _to_entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target,
        details=json.loads(row.details), prev_hash=row.prev_hash, entry_hash=row.entry_hash,
    )


def chain_head(session: Session) -> ChainHead:
    write_pending_entries(session)  # this transaction's own entries first
    head = session.execute(
        select(AuditHeadRow.seq, AuditHeadRow.entry_hash).where(AuditHeadRow.id == _HEAD_ID)
    ).first()
    if head is None:
        return ChainHead(0, GENESIS_HASH)
    return ChainHead(head.seq, head.entry_hash)


def list_audit_entries(
    session: Session,
    *,
    after_seq: int = 0,
    limit: int = 100,
    action: str | None = None,
    newest_first: bool = False,
) -> list[AuditEntry]:
    write_pending_entries(session)  # this transaction's own entries first
    query = select(AuditEntryRow)
    if action:
        query = query.where(AuditEntryRow.action == action)
    if newest_first:
        if after_seq:
            query = query.where(AuditEntryRow.seq < after_seq)
        query = query.order_by(AuditEntryRow.seq.desc())
    else:
        query = query.where(AuditEntryRow.seq > after_seq).order_by(AuditEntryRow.seq)
    return [_to_entry(r) for r in session.execute(query.limit(limit)).scalars()]


def _rows_in_order(session: Session) -> Iterator[AuditEntryRow]:
    last = None
    while True:
        query = select(AuditEntryRow).order_by(AuditEntryRow.seq).limit(_VERIFY_BATCH)
        if last is not None:
            query = query.where(AuditEntryRow.seq > last)
        rows = list(session.execute(query).scalars())
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(session: Session, anchored: ChainHead | None = None) -> ChainVerification:
    """Walk the whole chain; stop at the first entry that does not hold."""
    write_pending_entries(session)  # this transaction's own entries first
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last = ChainHead(0, GENESIS_HASH)

    def broken(seq: int, problem: str) -> ChainVerification:
        return ChainVerification(False, checked, last, first_bad_seq=seq, problems=[problem])

    for row in _rows_in_order(session):
        if row.seq != expected_seq:
            kind = "missing" if row.seq > expected_seq else "duplicated"
            return broken(row.seq, f"entry {expected_seq} is {kind}: found {row.seq} next")
        if row.prev_hash != expected_prev:
            return broken(row.seq, f"entry {row.seq} does not link to entry {row.seq - 1}")
        recomputed = compute_entry_hash(
            seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target,
            details=row.details, prev_hash=row.prev_hash,
        )
        if recomputed != row.entry_hash:
            return broken(row.seq, f"entry {row.seq} was altered: its hash does not match")
        checked += 1
        expected_prev = row.entry_hash
        expected_seq += 1
        last = ChainHead(row.seq, row.entry_hash)

    stored = session.get(AuditHeadRow, _HEAD_ID)
    if stored is not None and (stored.seq, stored.entry_hash) != (last.seq, last.entry_hash):
        return broken(
            last.seq + 1,
            f"the chain ends at entry {last.seq} but the recorded head is entry {stored.seq}: "
            "newest entries were removed or the head was changed",
        )
    if anchored is not None and anchored.seq > 0:
        total = session.execute(select(func.count()).select_from(AuditEntryRow)).scalar_one()
        if anchored.seq > last.seq or (
            anchored.seq <= total and _hash_at(session, anchored.seq) != anchored.entry_hash
        ):
            return broken(anchored.seq, f"entry {anchored.seq} does not match the anchored head")
    return ChainVerification(True, checked, last)


def _hash_at(session: Session, seq: int) -> str | None:
    row = session.get(AuditEntryRow, seq)
    return row.entry_hash if row else None
