"""Notifications: events delivered to signed webhooks and syslog (RFC 5424, CEF payload).

A domain beside telemetry and findings: it knows nothing of what an event means, only how to
deliver it durably (an outbox in the database, retried with backoff, never blocking the
caller) and how to sign or format it for each kind of destination::

    notifier = Notifier(db, master_key)
    notifier.start()
    notifier.publish(NotificationEvent(kind="alarm.opened", severity=Severity.HIGH,
                                       title="...", signature_id="beacon",
                                       occurred_at=utcnow(), device_id=device_id))
    ...
    notifier.stop()   # what is still queued is stored; the outbox is delivered next start

Destinations are managed with :mod:`.destinations` (every change audited); deliveries are
read with :func:`list_deliveries`. See docs/notifications.md.
"""

from fleetguard.notify.destinations import (
    create_destination,
    delete_destination,
    get_destination,
    list_destinations,
    rotate_webhook_secret,
    update_destination,
)
from fleetguard.notify.errors import (
    AddressRefusedError,
    DestinationExistsError,
    DestinationNotFoundError,
    NotAWebhookError,
)
from fleetguard.notify.models import (
    SYSLOG_FACILITIES,
    Attempt,
    CreatedDestination,
    Delivery,
    DeliveryCounts,
    DeliveryPage,
    DeliveryState,
    Destination,
    DestinationChanges,
    DestinationKind,
    NotificationEvent,
    NotifierStats,
    SyslogSettings,
    SyslogTransport,
    WebhookSettings,
)
from fleetguard.notify.notifier import Notifier, NotifierSettings, deliver_once
from fleetguard.notify.outbox import RetryPolicy, delivery_counts, list_deliveries
from fleetguard.notify.probe import make_test_event, send_test_event

__all__ = [
    "SYSLOG_FACILITIES",
    "AddressRefusedError",
    "Attempt",
    "CreatedDestination",
    "Delivery",
    "DeliveryCounts",
    "DeliveryPage",
    "DeliveryState",
    "Destination",
    "DestinationChanges",
    "DestinationExistsError",
    "DestinationKind",
    "DestinationNotFoundError",
    "NotAWebhookError",
    "NotificationEvent",
    "Notifier",
    "NotifierSettings",
    "NotifierStats",
    "RetryPolicy",
    "SyslogSettings",
    "SyslogTransport",
    "WebhookSettings",
    "create_destination",
    "delete_destination",
    "deliver_once",
    "delivery_counts",
    "get_destination",
    "list_deliveries",
    "list_destinations",
    "make_test_event",
    "rotate_webhook_secret",
    "send_test_event",
    "update_destination",
]
