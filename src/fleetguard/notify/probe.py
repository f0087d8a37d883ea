"""A test event: sent once to one destination when an admin asks, to prove the path works."""

from __future__ import annotations

import uuid

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.severity import Severity
from fleetguard.keys import MasterKey
from fleetguard.notify.destinations import get_destination
from fleetguard.notify.models import Delivery, NotificationEvent
from fleetguard.notify.notifier import deliver_once
from fleetguard.notify.outbox import record_test_delivery
from fleetguard.store import Database

TEST_KIND = "notification.test"


def make_test_event(actor: str) -> NotificationEvent:
    return NotificationEvent(
        id=f"test-{uuid.uuid4()}", kind=TEST_KIND, severity=Severity.INFO,
        title="fleetguard test notification", signature_id="fleetguard-test",
        name="Test notification", occurred_at=utcnow(),
        body={"requested_by": actor, "note": "sent on request; no device is involved"},
    )  # fmt: skip


def send_test_event(
    db: Database, master: MasterKey, destination_id: str, *, actor: str, timeout: float = 5.0
) -> Delivery:
    """Send a test event to the destination now (once, whatever its severity filter or
    enabled flag), record the outcome among its deliveries, and audit the request."""
    with db.read_session() as session:
        destination = get_destination(session, destination_id)
    event = make_test_event(actor)
    attempt = deliver_once(db, master, destination, event, timeout=timeout)
    with db.session() as session:
        delivery = record_test_delivery(session, destination.id, event, attempt)
        append_audit_entry(
            session, actor=actor, action="notification_destination.test",
            target=f"notification_destination:{destination.id}",
            details={"event_id": event.id, "state": delivery.state.value,
                     "status": attempt.status, "error": attempt.error},
        )  # fmt: skip
    return delivery


__all__ = ["TEST_KIND", "make_test_event", "send_test_event"]
