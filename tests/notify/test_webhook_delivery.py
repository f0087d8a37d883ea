"""Webhooks delivered to a real HTTPS receiver on 127.0.0.1: signed, once each, in order,
retried with backoff, refused for good on a 410, and carried across a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fleetguard.auditlog import list_audit_entries
from fleetguard.core.severity import Severity
from fleetguard.keys import MasterKey
from fleetguard.notify import (
    CreatedDestination,
    DeliveryCounts,
    DeliveryState,
    DestinationChanges,
    NotificationEvent,
    Notifier,
    RetryPolicy,
    WebhookSettings,
    create_destination,
    delivery_counts,
    list_deliveries,
    update_destination,
)
from fleetguard.store import Database
from tests.agent.pki import TestCA
from tests.notify.receivers import HttpsReceiver, verify_signature

T0 = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def _event(n: int, severity: Severity = Severity.HIGH) -> NotificationEvent:
    return NotificationEvent(
        id=f"evt-{n}", kind="alarm.opened", severity=severity, title=f"alarm {n}",
        signature_id="beacon", occurred_at=T0 + timedelta(seconds=n),
        device_id="4b7c9a1e-0000-4000-8000-000000000001", body={"n": n},
    )  # fmt: skip


def _webhook(db: Database, master_key: MasterKey, receiver: HttpsReceiver, ca: TestCA,
             min_severity: Severity = Severity.LOW) -> CreatedDestination:
    with db.session() as session:
        return create_destination(
            session, master_key, actor="test", name="soc", min_severity=min_severity,
            webhook=WebhookSettings(url=receiver.url, allow_private_network=True,
                                    ca_pem=ca.pem.decode()),
        )  # fmt: skip


def _states(db: Database) -> dict[str, DeliveryState]:
    with db.read_session() as session:
        page = list_deliveries(session)
    return {d.event_id: d.state for d in page.deliveries}


def _wait_states(db: Database, want: dict[str, DeliveryState], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _states(db) == want:
            return
        time.sleep(0.05)
    assert _states(db) == want


def test_each_event_arrives_once_in_order_with_a_valid_signature(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    created = _webhook(db, master_key, receiver, receiver_ca)
    notifier = make_notifier()
    notifier.start()
    # One of them published twice: each arrives once, in order.
    for n in (1, 2, 3, 2, 4, 5):
        assert notifier.publish(_event(n))
    _wait_states(db, {f"evt-{n}": DeliveryState.DELIVERED for n in range(1, 6)})
    time.sleep(0.3)  # nothing more is coming
    got = receiver.requests
    assert created.secret is not None
    assert all(verify_signature(created.secret, r.headers, r.body) for r in got)
    assert [r.event["id"] for r in got] == [f"evt-{n}" for n in range(1, 6)]
    assert [r.headers["x-fleetguard-event-id"] for r in got] == [r.event["id"] for r in got]


def test_events_already_in_the_outbox_arrive_in_event_time_order(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca)
    writer = make_notifier()
    for n in (5, 2, 4, 1, 3):
        writer.publish(_event(n))
    writer.stop()  # stored, not sent
    assert receiver.requests == []
    make_notifier().start()
    got = receiver.wait_for(5)
    assert [r.event["id"] for r in got] == [f"evt-{n}" for n in range(1, 6)]


def test_a_wrong_secret_does_not_verify(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca)
    notifier = make_notifier()
    notifier.start()
    notifier.publish(_event(1))
    (request,) = receiver.wait_for(1)
    assert not verify_signature("whsec_not-the-secret", request.headers, request.body)


def test_an_event_below_the_minimum_severity_is_not_sent(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca, min_severity=Severity.HIGH)
    notifier = make_notifier()
    notifier.start()
    notifier.publish(_event(1, Severity.MEDIUM))
    notifier.publish(_event(2, Severity.CRITICAL))
    got = receiver.wait_for(1)
    time.sleep(0.5)
    assert [r.event["id"] for r in receiver.requests] == ["evt-2"] == [got[0].event["id"]]


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt_after_backoff(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca)
    receiver.script.answers = [(503, {}), (500, {})]
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.4, max_delay_s=5.0)
    notifier = make_notifier(retry=policy)
    notifier.start()
    notifier.publish(_event(1))
    _wait_states(db, {"evt-1": DeliveryState.DELIVERED})
    first, second, third = receiver.requests
    assert [r.headers["x-fleetguard-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    # Jitter keeps each wait within [0.5, 1] of base * 2^(n-1).
    assert second.at - first.at >= 0.5 * 0.4
    assert third.at - second.at >= 0.5 * 0.8
    assert notifier.stats().retried == 2 and notifier.stats().delivered == 1


def test_a_429_waits_at_least_its_retry_after(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca)
    receiver.script.answers = [(429, {"Retry-After": "2"})]
    notifier = make_notifier(retry=RetryPolicy(base_delay_s=0.05))
    notifier.start()
    notifier.publish(_event(1))
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 1.9


def test_a_410_is_a_permanent_failure_and_is_audited(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    created = _webhook(db, master_key, receiver, receiver_ca)
    receiver.script.answers = [(410, {})]
    notifier = make_notifier()
    notifier.start()
    notifier.publish(_event(1))
    notifier.publish(_event(2))
    # The failed head does not hold the queue: the next event is delivered.
    _wait_states(db, {"evt-1": DeliveryState.FAILED, "evt-2": DeliveryState.DELIVERED})
    time.sleep(0.5)
    assert len(receiver.requests) == 2  # never retried
    with db.session() as session:
        failed = list_deliveries(session, state=DeliveryState.FAILED).deliveries
        entries = list_audit_entries(session, action="notification.delivery_failed")
    assert failed[0].last_status == 410 and failed[0].attempts == 1
    assert [e.target for e in entries] == \
        [f"notification_destination:{created.destination.id}"]


def test_a_delivery_out_of_attempts_fails_permanently(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca)
    receiver.script.answers = [(503, {})] * 3
    notifier = make_notifier(retry=RetryPolicy(max_attempts=3, base_delay_s=0.05))
    notifier.start()
    notifier.publish(_event(1))
    _wait_states(db, {"evt-1": DeliveryState.FAILED})
    assert len(receiver.requests) == 3
    assert notifier.stats().failed == 1


def test_a_restarted_notifier_delivers_what_was_pending(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    created = _webhook(db, master_key, receiver, receiver_ca)
    receiver.script.answers = [(503, {})]
    # A long backoff: the first notifier stops while the delivery waits to be retried.
    first = make_notifier(retry=RetryPolicy(base_delay_s=1.0))
    first.start()
    first.publish(_event(1))
    receiver.wait_for(1)
    first.stop()
    assert _states(db) == {"evt-1": DeliveryState.PENDING}
    with db.read_session() as session:
        assert delivery_counts(session)[created.destination.id] == \
            DeliveryCounts(pending=1, retrying=1)
    second = make_notifier()
    second.start()
    _wait_states(db, {"evt-1": DeliveryState.DELIVERED})
    assert [r.event["id"] for r in receiver.requests] == ["evt-1", "evt-1"]


def test_publish_returns_at_once_and_counts_what_overflows(
    db: Database, make_notifier: Callable[..., Notifier],
) -> None:
    notifier = make_notifier(queue_size=3)  # not started: nothing drains the queue
    accepted = [notifier.publish(_event(n)) for n in range(5)]
    assert accepted == [True, True, True, False, False]
    stats = notifier.stats()
    assert (stats.published, stats.overflowed, stats.queued) == (3, 2, 3)


def test_a_disabled_destination_keeps_what_was_pending_and_gets_no_new_events(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    created = _webhook(db, master_key, receiver, receiver_ca)
    writer = make_notifier()
    writer.publish(_event(1))
    writer.publish(_event(2))
    writer.stop()  # stored as pending
    with db.session() as session:
        update_destination(session, created.destination.id,
                           DestinationChanges(enabled=False), actor="test")
    notifier = make_notifier()
    notifier.start()
    notifier.publish(_event(3))  # published while disabled: not for this destination
    time.sleep(0.8)
    assert receiver.requests == []
    assert _states(db) == {"evt-1": DeliveryState.PENDING, "evt-2": DeliveryState.PENDING}
    with db.session() as session:
        update_destination(session, created.destination.id,
                           DestinationChanges(enabled=True), actor="test")
    notifier.wake()
    got = receiver.wait_for(2)
    time.sleep(0.3)
    assert [r.event["id"] for r in receiver.requests] == ["evt-1", "evt-2"] == \
        [r.event["id"] for r in got]


def test_a_receiver_that_does_not_answer_does_not_hold_up_another(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        with db.session() as session:
            create_destination(
                session, master_key, actor="test", name="silent", min_severity=Severity.LOW,
                webhook=WebhookSettings(f"https://127.0.0.1:{silent.getsockname()[1]}/x",
                                        allow_private_network=True))
        _webhook(db, master_key, receiver, receiver_ca)
        notifier = make_notifier()  # timeout 3 s
        notifier.start()
        started = time.monotonic()
        for n in (1, 2, 3):
            notifier.publish(_event(n))
        got = receiver.wait_for(3)
        assert [r.event["id"] for r in got] == ["evt-1", "evt-2", "evt-3"]
        assert got[-1].at - started < 3.0  # not behind the silent one's timeout
    finally:
        silent.close()


def test_two_notifiers_on_one_database_deliver_each_event_once_in_order(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier],
) -> None:
    _webhook(db, master_key, receiver, receiver_ca)
    writer = make_notifier()
    for n in range(1, 13):
        writer.publish(_event(n))
    writer.stop()
    first, second = make_notifier(), make_notifier()  # two servers, as it were
    first.start()
    second.start()
    got = receiver.wait_for(12)
    time.sleep(0.5)
    assert [r.event["id"] for r in receiver.requests] == [f"evt-{n}" for n in range(1, 13)]
    assert len(got) == 12
    assert first.stats().delivered + second.stats().delivered == 12
