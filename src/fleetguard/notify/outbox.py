"""The outbox: one row per event and destination, delivered in event-time order.

Each destination's queue is its pending rows by event time; only its head is tried, so a
receiver sees events in order (a head waiting out its backoff holds the ones behind it).
A worker claims the head with a lease before it sends (two servers never send the same
row at once), sends outside any transaction, then records how it went.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, func, insert, select, update
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.notify.models import (
    Attempt,
    Delivery,
    DeliveryCounts,
    DeliveryPage,
    DeliveryState,
    Destination,
    NotificationEvent,
)
from fleetguard.store.db import flushed_connection
from fleetguard.store.paging import decode_cursor, encode_cursor, page_of, refused_cursor
from fleetguard.store.tables.notify import (
    NotificationDestinationRow,
    NotificationEventRow,
    OutboxRow,
)

AUTOMATION_ACTOR = "system:notifier"
_PENDING = DeliveryState.PENDING.value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base * 2^(n-1), at most ``cap``,
    times a random factor in [0.5, 1]; never less than the receiver's Retry-After."""

    max_attempts: int = 8
    base_delay_s: float = 2.0
    max_delay_s: float = 600.0
    lease_s: float = 60.0

    def delay(self, attempts: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempts - 1))
        jittered = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - spreading, not secrecy
        return float(max(jittered, retry_after or 0.0))


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed by this worker: what to send where."""

    outbox_id: int
    destination_id: str
    event: NotificationEvent
    attempt: int  # the number of this attempt, from 1


@dataclass(frozen=True, slots=True)
class Enqueued:
    stored: int
    duplicates: int
    rejected: list[str]  # ids of events whose body is not JSON: never stored


def enqueue_events(
    session: Session, events: Iterable[NotificationEvent], destinations: Sequence[Destination]
) -> Enqueued:
    """Store each event with a pending delivery per destination that wants it. An event no
    destination wants is not stored; one whose body cannot be JSON is rejected (one bad
    event never holds up the others)."""
    now = utcnow()
    batch = list(events)
    seen = set(session.execute(
        select(NotificationEventRow.id)
        .where(NotificationEventRow.id.in_({e.id for e in batch}))
    ).scalars())
    event_rows: list[dict[str, Any]] = []
    outbox_rows: list[dict[str, Any]] = []
    rejected: list[str] = []
    duplicates = 0
    for event in batch:
        if event.id in seen:
            duplicates += 1
            continue
        seen.add(event.id)
        wanted = [d for d in destinations if d.wants(event)]
        if not wanted:
            continue
        try:
            payload = json.dumps(event.to_json())
        except (TypeError, ValueError):
            rejected.append(event.id)
            continue
        event_rows.append({
            "id": event.id, "kind": event.kind, "severity_rank": event.severity.rank,
            "occurred_at": event.occurred_at, "payload": payload, "created_at": now,
        })  # fmt: skip
        outbox_rows.extend({
            "destination_id": d.id, "event_id": event.id, "occurred_at": event.occurred_at,
            "state": _PENDING, "attempts": 0, "next_attempt_at": now, "test": False,
            "created_at": now,
        } for d in wanted)  # fmt: skip
    if event_rows:
        # Plain inserts, many rows per statement: the ORM's per-object work is most of the
        # cost of a batch otherwise.
        connection = flushed_connection(session)
        connection.execute(insert(NotificationEventRow), event_rows)
        connection.execute(insert(OutboxRow), outbox_rows)
    return Enqueued(len(event_rows), duplicates, rejected)


def queue_heads(session: Session) -> list[tuple[str, int, datetime]]:
    """Each enabled destination's oldest pending delivery: (destination id, outbox id, due
    at). A disabled destination's deliveries wait until it is enabled again."""
    destination_ids = session.execute(
        select(OutboxRow.destination_id).distinct()
        .join(NotificationDestinationRow,
              NotificationDestinationRow.id == OutboxRow.destination_id)
        .where(OutboxRow.state == _PENDING, NotificationDestinationRow.enabled.is_(True))
    ).scalars().all()
    heads = []
    for destination_id in destination_ids:
        head = session.execute(
            select(OutboxRow.id, OutboxRow.next_attempt_at, OutboxRow.leased_until)
            .where(OutboxRow.destination_id == destination_id, OutboxRow.state == _PENDING)
            .order_by(OutboxRow.occurred_at, OutboxRow.id).limit(1)
        ).first()
        if head is not None:
            due = max(head.next_attempt_at, head.leased_until or head.next_attempt_at)
            heads.append((destination_id, head.id, due))
    return heads


def claim_head(
    session: Session, destination_id: str, policy: RetryPolicy, *, now: datetime | None = None
) -> Claimed | None:
    """Lease the destination's head if it is due and nobody holds it."""
    now = now or utcnow()
    head_row = session.execute(
        select(OutboxRow.id, OutboxRow.event_id, OutboxRow.attempts)
        .where(OutboxRow.destination_id == destination_id, OutboxRow.state == _PENDING)
        .order_by(OutboxRow.occurred_at, OutboxRow.id).limit(1)
    ).first()
    if head_row is None:
        return None
    head = head_row.id
    claimed = _rowcount(session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == head, OutboxRow.state == _PENDING,
               OutboxRow.next_attempt_at <= now,
               (OutboxRow.leased_until.is_(None)) | (OutboxRow.leased_until < now))
        .values(leased_until=now + timedelta(seconds=policy.lease_s))
        .execution_options(synchronize_session=False)
    ))
    if claimed != 1:
        return None
    payload = session.execute(
        select(NotificationEventRow.payload).where(NotificationEventRow.id == head_row.event_id)
    ).scalar_one()
    event = NotificationEvent.from_json(json.loads(payload))
    # The row was unchanged since it was read: the update above matched it as pending.
    return Claimed(head, destination_id, event, head_row.attempts + 1)


def record_attempt(
    session: Session, claimed: Claimed, attempt: Attempt, policy: RetryPolicy
) -> DeliveryState:
    """Record how an attempt went: delivered, scheduled again, or failed for good (after
    ``policy.max_attempts``, or when the receiver refused it), which is audited."""
    row = session.get(OutboxRow, claimed.outbox_id, with_for_update=True)
    if row is None or row.state != _PENDING:  # deleted with its destination meanwhile
        return DeliveryState.FAILED
    now = utcnow()
    row.attempts += 1
    row.leased_until = None
    row.last_status = attempt.status
    row.last_error = attempt.error[:500] if attempt.error else None
    if attempt.delivered:
        row.state, row.finished_at = DeliveryState.DELIVERED.value, now
        return DeliveryState.DELIVERED
    if attempt.retry and row.attempts < policy.max_attempts:
        row.next_attempt_at = now + timedelta(
            seconds=policy.delay(row.attempts, attempt.retry_after))
        return DeliveryState.PENDING
    row.state, row.finished_at = DeliveryState.FAILED.value, now
    append_audit_entry(
        session, actor=AUTOMATION_ACTOR, action="notification.delivery_failed",
        target=f"notification_destination:{row.destination_id}",
        details={"event_id": row.event_id, "attempts": row.attempts,
                 "error": row.last_error, "status": row.last_status},
    )  # fmt: skip
    return DeliveryState.FAILED


def record_test_delivery(
    session: Session, destination_id: str, event: NotificationEvent, attempt: Attempt
) -> Delivery:
    """A test event's one attempt, kept beside the others (never retried)."""
    now = utcnow()
    session.add(NotificationEventRow(
        id=event.id, kind=event.kind, severity_rank=event.severity.rank,
        occurred_at=event.occurred_at, payload=json.dumps(event.to_json()), created_at=now,
    ))  # fmt: skip
    session.flush()
    state = DeliveryState.DELIVERED if attempt.delivered else DeliveryState.FAILED
    row = OutboxRow(
        destination_id=destination_id, event_id=event.id, occurred_at=event.occurred_at,
        state=state.value, attempts=1, next_attempt_at=now, test=True, created_at=now,
        finished_at=now, last_status=attempt.status,
        last_error=attempt.error[:500] if attempt.error else None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return _delivery(row, event.kind, event.title)


def _delivery(row: OutboxRow, kind: str, title: str) -> Delivery:
    state = DeliveryState(row.state)
    return Delivery(
        id=row.id, destination_id=row.destination_id, event_id=row.event_id, event_kind=kind,
        event_title=title, occurred_at=row.occurred_at, state=state, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if state is DeliveryState.PENDING else None,
        last_error=row.last_error, last_status=row.last_status, test=row.test,
        created_at=row.created_at, finished_at=row.finished_at,
    )  # fmt: skip


def list_deliveries(
    session: Session, *, destination_id: str | None = None,
    state: DeliveryState | None = None, cursor: str | None = None, limit: int = 100,
) -> DeliveryPage:
    """Newest first."""
    query = select(OutboxRow)
    if destination_id is not None:
        query = query.where(OutboxRow.destination_id == destination_id)
    if state is not None:
        query = query.where(OutboxRow.state == state.value)
    if cursor:
        (before,) = decode_cursor(cursor, 1)
        if not isinstance(before, int):
            raise refused_cursor()
        query = query.where(OutboxRow.id < before)
    rows, more = page_of(session, query.order_by(OutboxRow.id.desc()), limit)
    events = {e.id: e for e in session.execute(
        select(NotificationEventRow).where(
            NotificationEventRow.id.in_({r.event_id for r in rows}))).scalars()}
    deliveries = []
    for row in rows:
        payload = json.loads(events[row.event_id].payload)
        deliveries.append(_delivery(row, payload["kind"], payload["title"]))
    return DeliveryPage(deliveries, encode_cursor([rows[-1].id]) if more and rows else None)


def delivery_counts(session: Session) -> dict[str, DeliveryCounts]:
    """Deliveries by destination and state (test sends included)."""
    counts: dict[str, DeliveryCounts] = {}
    tried = OutboxRow.attempts > 0
    for destination_id, state, failed_once, count in session.execute(
        select(OutboxRow.destination_id, OutboxRow.state, tried, func.count())
        .group_by(OutboxRow.destination_id, OutboxRow.state, tried)
    ):
        into = counts.setdefault(destination_id, DeliveryCounts())
        setattr(into, state, getattr(into, state) + count)
        if state == _PENDING and failed_once:
            into.retrying += count
    return counts


def prune_finished(session: Session, *, older_than: datetime) -> int:
    """Forget finished deliveries older than ``older_than`` and events left with none."""
    removed = _rowcount(session.execute(
        delete(OutboxRow).where(OutboxRow.state != _PENDING, OutboxRow.finished_at < older_than)
        .execution_options(synchronize_session=False)
    ))
    session.execute(
        delete(NotificationEventRow)
        .where(~select(OutboxRow.id).where(OutboxRow.event_id == NotificationEventRow.id)
               .exists())
        .execution_options(synchronize_session=False)
    )
    return removed


def _rowcount(result: Result[Any]) -> int:
    return max(int(cast(CursorResult[Any], result).rowcount), 0)


__all__ = [
    "AUTOMATION_ACTOR",
    "Claimed",
    "Enqueued",
    "RetryPolicy",
    "claim_head",
    "delivery_counts",
    "enqueue_events",
    "list_deliveries",
    "prune_finished",
    "queue_heads",
    "record_attempt",
    "record_test_delivery",
]
