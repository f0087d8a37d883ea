"""The audit log: read it, verify its chain, read its head for anchoring."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from fleetguard import auditlog
from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas import (
    AuditEntryOut,
    AuditPage,
    ChainHeadOut,
    ChainVerificationOut,
)
from fleetguard.operators import Permission, Principal

router = APIRouter(prefix="/api/v1/audit-log", tags=["audit"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.AUDIT_READ))]
MAX_SEQ = 2**63 - 1


@router.get("")
def list_entries(
    ctx: Ctx, _: Reader,
    before: Annotated[
        # Bounded as the database's integers are: a larger one overflowed SQLite (a 500).
        int | None, Query(ge=1, le=MAX_SEQ, description="cursor: entries older than this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    action: Annotated[str | None, Query(max_length=100)] = None,
) -> AuditPage:
    """Newest first, with a cursor for the next page."""
    with ctx.db.session() as session:
        entries = auditlog.list_audit_entries(
            session, after_seq=before or 0, limit=limit, action=action, newest_first=True
        )
    next_cursor = entries[-1].seq if len(entries) == limit and entries[-1].seq > 1 else None
    return AuditPage(
        entries=[AuditEntryOut(
            seq=e.seq, at=e.at, actor=e.actor, action=e.action, target=e.target,
            details=e.details, prev_hash=e.prev_hash, entry_hash=e.entry_hash) for e in entries],
        next_cursor=next_cursor,
    )


@router.get("/head")
def head(ctx: Ctx, _: Reader) -> ChainHeadOut:
    with ctx.db.session() as session:
        h = auditlog.chain_head(session)
    return ChainHeadOut(seq=h.seq, entry_hash=h.entry_hash)


@router.get("/verify")
def verify(ctx: Ctx, _: Reader) -> ChainVerificationOut:
    with ctx.db.session() as session:
        result = auditlog.verify_chain(session)
    return ChainVerificationOut(
        ok=result.ok, entries_checked=result.entries_checked,
        head=ChainHeadOut(seq=result.head.seq, entry_hash=result.head.entry_hash),
        first_bad_seq=result.first_bad_seq, problems=result.problems,
    )
