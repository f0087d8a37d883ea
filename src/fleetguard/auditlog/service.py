"""Append and verify the keyed hash chain.

Each entry's hash covers its sequence number, time, actor, action, target, details, the
previous entry's hash and the id of its key, so editing, deleting, inserting or
reordering rows breaks the chain at the first row touched. The hash is an HMAC-SHA256
under the audit key derived from the installation's master key (``keyring``): someone who
can write the database but does not hold the master key can change rows, but can no
longer recompute a chain that verifies, as plain SHA-256 allowed.

Entries written before the chain was keyed (migration 0007) keep their plain SHA-256 and
a NULL ``key_id``. They may only form a prefix, and the first start with the master key
closes it with a keyed checkpoint entry (``audit.chain_keyed``) that names the last
unkeyed entry and its hash; from then on that prefix is covered as it was at the
checkpoint, and verification says which range that is. Without the checkpoint, unkeyed
entries do not verify.

After a master key rotation the chain goes on under the new key; the rotation's own
entry, under the old key, names the old and new key ids, an entry may change key only
after such an entry, and a retired key may not come back (``verify_chain``).

Deleting the newest rows leaves a shorter valid chain: the ``audit_head`` row catches
the careless, and a head anchored outside the database (``--expect-head``, and the
signed heads of ``fleetguard.auditlog.anchor``) catches the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from fleetguard.auditlog.keyring import (
    KEYRING_INFO,
    AuditKey,
    AuditKeyring,
    load_audit_keyring,
    session_keyring,
)
from fleetguard.auditlog.models import AuditEntry, ChainHead, ChainVerification
from fleetguard.core.clock import utcnow
from fleetguard.keys import MasterKey
from fleetguard.store import Database
from fleetguard.store.tables.audit import AuditEntryRow, AuditHeadRow

GENESIS_HASH = "0" * 64
CHECKPOINT_ACTION = "audit.chain_keyed"
ROTATION_ACTION = "keys.rotate_master"
_HEAD_ID = 1
_VERIFY_BATCH = 1000
_HEAD_CACHE = "fleetguard.audit_head"
_PENDING = "fleetguard.audit_pending"
log = logging.getLogger("fleetguard.auditlog")


def _canonical_details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _material(
    seq: int, at: datetime, actor: str, action: str, target: str, details: str,
    prev_hash: str, key_id: str | None,
) -> bytes:
    fields: list[object] = [seq, at.isoformat(timespec="microseconds"), actor, action,
                            target, details, prev_hash]
    if key_id is not None:
        fields.append(key_id)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def compute_entry_hash(
    *, seq: int, at: datetime, actor: str, action: str, target: str, details: str, prev_hash: str
) -> str:
    """The plain SHA-256 of an entry written before the chain was keyed."""
    return hashlib.sha256(
        _material(seq, at, actor, action, target, details, prev_hash, None)
    ).hexdigest()


def compute_entry_mac(
    key: AuditKey, *, seq: int, at: datetime, actor: str, action: str, target: str,
    details: str, prev_hash: str,
) -> str:
    """The HMAC-SHA256 of a keyed entry under ``key`` (its id is part of what is MACed)."""
    return key.mac(_material(seq, at, actor, action, target, details, prev_hash, key.key_id))


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

    Raises ``AuditKeyMissingError`` at once if the session's database was opened without
    the installation's master key: an entry is keyed or not written at all.
    """
    if KEYRING_INFO not in session.info:
        session_keyring(session)  # raises, naming the cause
    session.connection()  # in a transaction, so a rollback forgets the entry
    pending: list[tuple[datetime, str, str, str, str]] = session.info.setdefault(_PENDING, [])
    pending.append((utcnow(), actor, action, target, _canonical_details(details or {})))


def write_pending_entries(session: Session) -> None:
    """Chain and write the entries this transaction has recorded so far."""
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    key = session_keyring(session).current
    key_id = key.key_id
    head = _locked_head(session)
    seq, prev = head
    rows = []
    for at, actor, action, target, details_text in pending:
        seq += 1
        entry_hash = key.mac(
            _material(seq, at, actor, action, target, details_text, prev, key_id)
        )
        rows.append({"seq": seq, "at": at, "actor": actor, "action": action,
                     "target": target, "details": details_text, "prev_hash": prev,
                     "entry_hash": entry_hash, "key_id": key_id})
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


def attach_audit_keys(
    db: Database, master: MasterKey, *, exported_head: Path | None = None
) -> AuditKeyring:
    """Give every session of ``db`` the audit keys of ``master``; key the chain if it is not.

    Called once when an installation is opened (``open_installation_database``). If the
    newest entry predates the keyed chain (a database migrated to 0007), a keyed
    checkpoint over the unkeyed prefix is appended first: see ``checkpoint_unkeyed_prefix``.
    ``exported_head`` is the data dir's signed head file: if it exists, this chain was
    keyed before, and an unkeyed tail means keys were stripped, not that it is new.
    """
    with db.read_session() as session:
        keyring = load_audit_keyring(session, master)
    db.share_with_sessions(KEYRING_INFO, keyring)
    checkpoint_unkeyed_prefix(db, exported_head=exported_head)
    return keyring


def audit_keys_attached(db: Database) -> bool:
    return isinstance(db.shared_with_sessions(KEYRING_INFO), AuditKeyring)


def _newest_entry_unkeyed(db: Database) -> bool:
    with db.read_session() as session:
        newest = session.execute(
            select(_ENTRIES.c.key_id).join(_HEAD, _HEAD.c.seq == _ENTRIES.c.seq)
            .where(_HEAD.c.id == _HEAD_ID)
        ).first()
        if newest is None:  # an empty chain, or a head row naming no entry
            head = session.execute(select(_HEAD.c.seq).where(_HEAD.c.id == _HEAD_ID)).first()
            return head is not None and head.seq > 0
        return newest.key_id is None


def checkpoint_unkeyed_prefix(db: Database, *, exported_head: Path | None = None) -> int | None:
    """Close an unkeyed prefix with a keyed checkpoint entry; its seq, or None if not needed.

    The checkpoint names the last unkeyed entry and its hash, so the keyed chain from
    here on commits to the prefix as it is now, and says whether that prefix verified.
    Nothing is checkpointed over a chain that already holds keyed entries or whose head
    was exported signed (``exported_head`` exists): an unkeyed tail there is tampering,
    and blessing it would hide it; verification reports it instead.
    """
    if not _newest_entry_unkeyed(db):  # the usual case, decided without the write lock
        return None
    with db.session() as session:
        head = _locked_head(session)
        seq, last_hash = int(head[0]), str(head[1])
        if seq == 0:
            return None
        newest_key = session.execute(
            select(_ENTRIES.c.key_id, _ENTRIES.c.entry_hash).where(_ENTRIES.c.seq == seq)
        ).first()
        if newest_key is None or newest_key.entry_hash != last_hash:
            log.error("audit log: the recorded head (entry %d) is not the newest entry; "
                      "no keyed checkpoint was made; run `fleetguard audit-log verify`", seq)
            return None
        if newest_key.key_id is not None:
            return None
        keyed = session.execute(
            select(_ENTRIES.c.seq).where(_ENTRIES.c.key_id.is_not(None)).limit(1)
        ).first()
        if keyed is not None or (exported_head is not None and exported_head.exists()):
            log.error(
                "audit log: entry %d is unkeyed although this chain was keyed before "
                "(%s); no checkpoint was made over it; run `fleetguard audit-log verify`",
                seq, "keyed entries exist" if keyed is not None else f"{exported_head} exists",
            )
            return None
        walk = _walk(session, session_keyring(session), uncovered_prefix_ok=True)
        details: dict[str, Any] = {"unkeyed_through": seq, "unkeyed_head": last_hash,
                                   "unkeyed_verified": walk.ok}
        if not walk.ok:
            details["unkeyed_problems"] = walk.problems
            log.error("audit log: the unkeyed entries do not verify (%s); the keyed "
                      "checkpoint records that", "; ".join(walk.problems))
        append_audit_entry(session, actor="system", action=CHECKPOINT_ACTION,
                           target="audit-log", details=details)
        write_pending_entries(session)
        log.warning("audit log: entries 1..%d were written before the chain was keyed; "
                    "keyed checkpoint at entry %d covers them as they are now", seq, seq + 1)
        return seq + 1


def _to_entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target,
        details=json.loads(row.details), prev_hash=row.prev_hash, entry_hash=row.entry_hash,
        key_id=row.key_id,
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


def _rows_in_order(session: Session) -> Iterator[Any]:
    """Every entry in order, as plain rows: a long chain leaves nothing in the session."""
    last = None
    while True:
        query = select(_ENTRIES).order_by(_ENTRIES.c.seq).limit(_VERIFY_BATCH)
        if last is not None:
            query = query.where(_ENTRIES.c.seq > last)
        rows = list(session.execute(query))
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


@dataclass
class _Walk:
    ok: bool = True
    checked: int = 0
    last: ChainHead = field(default_factory=lambda: ChainHead(0, GENESIS_HASH))
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    unkeyed_through: int = 0
    key_ids: list[str] = field(default_factory=list)

    def broken(self, seq: int, problem: str) -> _Walk:
        self.ok, self.first_bad_seq, self.problems = False, seq, [problem]
        return self

    def result(self, anchored: ChainHead | None = None) -> ChainVerification:
        return ChainVerification(
            self.ok, self.checked, self.last, first_bad_seq=self.first_bad_seq,
            problems=self.problems, unkeyed_through=self.unkeyed_through,
            key_ids=self.key_ids, anchored=anchored,
        )


def _details_of(row: Any) -> dict[str, Any]:
    try:
        details = json.loads(row.details)
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


@dataclass
class _KeyTrail:
    """Which audit key the chain is under, and which keys it may move to."""

    current: str | None = None
    retired: dict[str, int] = field(default_factory=dict)  # key id -> entry of its successor
    rotations: dict[str, str] = field(default_factory=dict)  # old key id -> new, authentic

    def step(self, row: Any, walk: _Walk) -> str | None:
        """Follow a keyed entry's key; the problem if it moved to a key it may not use."""
        seq, key_id = row.seq, row.key_id
        if self.current is None and walk.unkeyed_through:
            details = _details_of(row)
            if (row.action != CHECKPOINT_ACTION
                    or details.get("unkeyed_through") != walk.unkeyed_through
                    or details.get("unkeyed_head") != row.prev_hash):
                return (f"entry {seq} is the first keyed entry after unkeyed entries "
                        f"1..{walk.unkeyed_through} but is not a keyed checkpoint over "
                        "them: unkeyed entries were put before keyed ones")
        elif self.current is not None and key_id != self.current:
            if key_id in self.retired:
                return (f"entry {seq} is keyed with audit key {key_id}, retired at entry "
                        f"{self.retired[key_id]}")
            if self.rotations.get(self.current) != key_id:
                return (f"entry {seq} changes the audit key from {self.current} to {key_id} "
                        "with no master key rotation entry before it")
            self.retired[self.current] = seq
        if key_id != self.current:
            walk.key_ids.append(key_id)
            self.current = key_id
        if row.action == ROTATION_ACTION:
            details = _details_of(row)
            old, new = details.get("old_key_id"), details.get("new_key_id")
            if self.current is not None and old == self.current and isinstance(new, str):
                self.rotations[self.current] = new
        return None


def _entry_problem(row: Any, keyring: AuditKeyring, keys: _KeyTrail, walk: _Walk) -> str | None:
    """Why this entry does not hold, given the entries before it; None when it does."""
    seq = row.seq
    if row.key_id is None:
        if keys.current is not None:
            return (f"entry {seq} is unkeyed but follows keyed entries: "
                    "it was rewritten without the audit key")
        recomputed = compute_entry_hash(
            seq=seq, at=row.at, actor=row.actor, action=row.action, target=row.target,
            details=row.details, prev_hash=row.prev_hash,
        )
        if recomputed != row.entry_hash:
            return f"entry {seq} was altered: its hash does not match"
        walk.unkeyed_through = seq
        return None
    key = keyring.get(row.key_id)
    if key is None:
        return (f"entry {seq} names audit key {row.key_id!r}, which "
                "is neither this installation's nor a retired one")
    recomputed = compute_entry_mac(
        key, seq=seq, at=row.at, actor=row.actor, action=row.action,
        target=row.target, details=row.details, prev_hash=row.prev_hash,
    )
    if recomputed != row.entry_hash:
        return f"entry {seq} was altered: its MAC under audit key {row.key_id} does not match"
    return keys.step(row, walk)


def _walk(
    session: Session, keyring: AuditKeyring, *, uncovered_prefix_ok: bool = False
) -> _Walk:
    """Check every entry; stop at the first that does not hold."""
    walk = _Walk()
    keys = _KeyTrail()
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for row in _rows_in_order(session):
        seq = row.seq
        if seq != expected_seq:
            kind = "missing" if seq > expected_seq else "duplicated"
            return walk.broken(seq, f"entry {expected_seq} is {kind}: found {seq} next")
        if row.prev_hash != expected_prev:
            return walk.broken(seq, f"entry {seq} does not link to entry {seq - 1}")
        problem = _entry_problem(row, keyring, keys, walk)
        if problem is not None:
            return walk.broken(seq, problem)
        walk.checked += 1
        expected_prev = row.entry_hash
        expected_seq += 1
        walk.last = ChainHead(seq, row.entry_hash)
    if walk.unkeyed_through and keys.current is None and not uncovered_prefix_ok:
        return walk.broken(
            1, f"entries 1..{walk.unkeyed_through} are unkeyed and no keyed checkpoint covers "
               "them: anyone who can write the database could have rewritten them (start the "
               "installation with its master key to checkpoint a newly migrated log)")
    return walk


def verify_chain(
    session: Session,
    anchored: ChainHead | Iterable[ChainHead] | None = None,
    *,
    keyring: AuditKeyring | None = None,
) -> ChainVerification:
    """Walk the whole chain; stop at the first entry that does not hold.

    ``anchored`` is one head or several recorded outside the database (``--expect-head``,
    exported signed heads): each must still be in the chain, with the same hash.
    ``keyring`` defaults to the one the session's database was opened with; without one
    this raises ``AuditKeyMissingError`` (a keyed chain cannot be checked without its key).
    """
    write_pending_entries(session)  # this transaction's own entries first
    keyring = keyring or session_keyring(session)
    anchors = [anchored] if isinstance(anchored, ChainHead) else list(anchored or [])
    walk = _walk(session, keyring)
    if not walk.ok:
        return walk.result()
    last = walk.last
    stored = session.get(AuditHeadRow, _HEAD_ID)
    if stored is not None and (stored.seq, stored.entry_hash) != (last.seq, last.entry_hash):
        return walk.broken(
            last.seq + 1,
            f"the chain ends at entry {last.seq} but the recorded head is entry {stored.seq}: "
            "newest entries were removed or the head was changed",
        ).result()
    checked = None
    for anchor in anchors:
        if anchor.seq == 0:
            continue
        if anchor.seq > last.seq or _hash_at(session, anchor.seq) != anchor.entry_hash:
            return walk.broken(
                anchor.seq, f"entry {anchor.seq} does not match the anchored head"
                + (" (the chain ends before it)" if anchor.seq > last.seq else "")
            ).result(anchor)
        checked = anchor if checked is None or anchor.seq > checked.seq else checked
    return walk.result(checked)


def _hash_at(session: Session, seq: int) -> str | None:
    row = session.get(AuditEntryRow, seq)
    return row.entry_hash if row else None
