"""The outbox and the notifier's promises: publish never waits for the database, nothing
secret reaches the logs, Retry-After is read in both forms, old deliveries are pruned."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import text

from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.keys import MasterKey
from fleetguard.notify import (
    DeliveryState,
    NotificationEvent,
    Notifier,
    RetryPolicy,
    WebhookSettings,
    create_destination,
    list_deliveries,
    list_destinations,
)
from fleetguard.notify.outbox import enqueue_events, prune_finished
from fleetguard.notify.webhook import retry_after_seconds
from fleetguard.store import Database
from fleetguard.store.tables.notify import OutboxRow
from tests.agent.pki import TestCA
from tests.notify.receivers import HttpsReceiver


def _event(n: int) -> NotificationEvent:
    return NotificationEvent(id=f"evt-{n}", kind="alarm.opened", severity=Severity.HIGH,
                             title=f"alarm {n}", signature_id="scan",
                             occurred_at=datetime(2026, 12, 8, tzinfo=UTC) + timedelta(seconds=n))


def test_publish_does_not_wait_for_a_busy_database(
    db: Database, master_key: MasterKey, make_notifier: Callable[..., Notifier],
) -> None:
    with db.session() as session:
        create_destination(session, master_key, actor="t", name="h", min_severity=Severity.LOW,
                           webhook=WebhookSettings("https://127.0.0.1:9/x",
                                                   allow_private_network=True))
    notifier = make_notifier()
    notifier.start()
    returned = threading.Event()
    accepted: list[bool] = []

    def publish_all() -> None:
        accepted.extend(notifier.publish(_event(n)) for n in range(200))
        returned.set()

    # Another writer holds the outbox (SQLite's write lock; a PostgreSQL table lock): the
    # worker waits for it, publish does not.
    with db.session() as blocking:
        blocking.execute(text("SELECT 1" if db.dialect == "sqlite" else
                              "LOCK TABLE notification_events IN ACCESS EXCLUSIVE MODE"))
        threading.Thread(target=publish_all).start()
        assert returned.wait(10)
        assert accepted == [True] * 200
    notifier.stop()
    assert notifier.stats().published == 200
    with db.read_session() as session:  # stored once the lock was gone
        assert len(list_deliveries(session, limit=500).deliveries) == 200


def test_nothing_secret_is_logged_while_delivering(
    db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
    make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture,
) -> None:
    url = receiver.url + "?token=do-not-log-me"
    with db.session() as session:
        created = create_destination(
            session, master_key, actor="t", name="soc", min_severity=Severity.LOW,
            webhook=WebhookSettings(url, allow_private_network=True,
                                    ca_pem=receiver_ca.pem.decode()))
    receiver.script.answers = [(500, {}), (410, {})]
    caplog.set_level(logging.DEBUG, logger="fleetguard")
    notifier = make_notifier(retry=RetryPolicy(base_delay_s=0.05))
    notifier.start()
    notifier.publish(_event(1))
    receiver.wait_for(2)
    notifier.stop()
    assert "will retry" in caplog.text and "failed for good" in caplog.text
    assert created.secret is not None
    assert created.secret not in caplog.text and "do-not-log-me" not in caplog.text


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("120") == 120
    later = format_datetime(utcnow() + timedelta(seconds=90), usegmt=True)
    assert 85 <= (retry_after_seconds(later) or 0) <= 90
    assert retry_after_seconds("999999") == 3600  # capped at an hour
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_backoff_doubles_within_its_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay_s=2, max_delay_s=600)
    for attempts, full in ((1, 2), (2, 4), (5, 32), (12, 600)):
        delays = [policy.delay(attempts, None) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not fixed
    assert policy.delay(1, 30.0) == 30.0


def test_old_finished_deliveries_are_pruned_and_pending_ones_kept(
    db: Database, master_key: MasterKey,
) -> None:
    with db.session() as session:
        create_destination(session, master_key, actor="t", name="h", min_severity=Severity.LOW,
                           webhook=WebhookSettings("https://soc.example.com/x"))
        enqueue_events(session, [_event(1), _event(2)], list_destinations(session))
    with db.session() as session:
        first = list_deliveries(session).deliveries[-1]
        row = session.get(OutboxRow, first.id)
        assert row is not None
        row.state, row.finished_at = DeliveryState.DELIVERED.value, utcnow() - timedelta(days=40)
    with db.session() as session:
        assert prune_finished(session, older_than=utcnow() - timedelta(days=30)) == 1
    with db.read_session() as session:
        left = list_deliveries(session).deliveries
    assert [(d.event_id, d.state) for d in left] == [("evt-2", DeliveryState.PENDING)]


def test_an_event_whose_body_is_not_json_is_refused_when_made() -> None:
    with pytest.raises(ValidationFailedError) as refused:
        NotificationEvent(kind="alarm.opened", severity=Severity.HIGH, title="t",
                          signature_id="s", occurred_at=utcnow(), body={"when": utcnow()})
    assert (refused.value.code, refused.value.field) == ("invalid_notification_event", "body")


def test_one_bad_event_does_not_hold_up_the_others(
    db: Database, master_key: MasterKey, make_notifier: Callable[..., Notifier],
) -> None:
    with db.session() as session:
        create_destination(session, master_key, actor="t", name="h", min_severity=Severity.LOW,
                           webhook=WebhookSettings("https://soc.example.com/x"))
    bad = _event(2)
    bad.body["set"] = {1, 2}  # made JSON-unfit after the event was checked
    notifier = make_notifier()
    for event in (_event(1), bad, _event(3)):
        notifier.publish(event)
    notifier.stop()
    with db.read_session() as session:
        stored = sorted(d.event_id for d in list_deliveries(session).deliveries)
    assert stored == ["evt-1", "evt-3"]
    assert notifier.stats().rejected == 1
