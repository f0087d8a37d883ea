"""What notifications are made of: events, destinations, deliveries and the notifier's stats."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.severity import Severity

#: CEF extension keys are letters and digits (the spec's keys, or custom ones).
_CEF_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
#: Keys the formatter sets from the event itself; a publisher may not override them.
RESERVED_CEF_KEYS = frozenset({"rt", "externalId", "cat", "msg", "cs1", "cs1Label"})
_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
MAX_TITLE = 200
MAX_EXTENSION_VALUE = 1023


class DestinationKind(StrEnum):
    WEBHOOK = "webhook"
    SYSLOG = "syslog"


class SyslogTransport(StrEnum):
    UDP = "udp"
    TCP = "tcp"  # octet-counting framing (RFC 6587)
    TLS = "tls"  # RFC 5425


class DeliveryState(StrEnum):
    PENDING = "pending"  # not yet delivered: due at next_attempt_at
    DELIVERED = "delivered"
    FAILED = "failed"  # permanently: refused by the receiver, or out of attempts


#: RFC 5424 facilities by name (the numbers are the PRI's facility).
SYSLOG_FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """Something to tell a SOC: what the notifier publishes, whatever produced it.

    ``id`` is stable: the same event published twice is delivered once per destination.
    ``cef_severity`` (0-10), ``signature_id``, ``name`` and ``extensions`` are the CEF
    header's and extension's (see docs/notifications.md for the mapping).
    """

    kind: str  # e.g. alarm.opened, alarm.updated, alarm.resolved
    severity: Severity
    title: str
    signature_id: str
    occurred_at: datetime
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    device_id: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # the CEF name; the title if empty
    cef_severity: int | None = None  # 0-10; from severity if None
    extensions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.id) and len(self.id) <= 64 and self.id.isprintable(), "id",
               "id must be 1-64 printable characters")
        _check(bool(_KIND.fullmatch(self.kind)) and len(self.kind) <= 32, "kind",
               "kind must be dotted lowercase words, at most 32 characters (alarm.opened)")
        _check(0 < len(self.title) <= MAX_TITLE, "title", f"title must be 1-{MAX_TITLE} characters")
        _check(0 < len(self.signature_id) <= 100, "signature_id",
               "signature_id must be 1-100 characters")
        _check(self.occurred_at.tzinfo is not None, "occurred_at", "occurred_at needs a zone")
        _check(self.cef_severity is None or 0 <= self.cef_severity <= 10, "cef_severity",
               "cef_severity must be 0-10")
        try:
            json.dumps(self.body)
        except (TypeError, ValueError):
            _check(False, "body", "body must be JSON: objects, arrays, text, numbers")
        for key, value in self.extensions.items():
            _check(bool(_CEF_KEY.fullmatch(key)) and key not in RESERVED_CEF_KEYS,
                   "extensions", f"extension key {key[:64]!r} is not a free CEF key")
            _check(isinstance(value, str) and len(value) <= MAX_EXTENSION_VALUE, "extensions",
                   f"extension {key} must be text of at most {MAX_EXTENSION_VALUE} characters")

    @property
    def cef_level(self) -> int:
        if self.cef_severity is not None:
            return self.cef_severity
        return CEF_SEVERITY[self.severity]

    @property
    def cef_name(self) -> str:
        return self.name or self.title

    def to_json(self) -> dict[str, Any]:
        """The event as webhooks receive it (and as the outbox keeps it)."""
        return {
            "id": self.id, "kind": self.kind, "severity": self.severity.value,
            "occurred_at": self.occurred_at.isoformat(), "device_id": self.device_id,
            "title": self.title, "body": self.body,
            "cef": {"signature_id": self.signature_id, "name": self.cef_name,
                    "severity": self.cef_level, "extensions": self.extensions},
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NotificationEvent:
        cef = data["cef"]
        return cls(
            id=data["id"], kind=data["kind"], severity=Severity(data["severity"]),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            device_id=data.get("device_id"), title=data["title"], body=data.get("body") or {},
            signature_id=cef["signature_id"], name=cef.get("name", ""),
            cef_severity=cef.get("severity"), extensions=cef.get("extensions") or {},
        )  # fmt: skip


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ValidationFailedError(message, field=field_name, code="invalid_notification_event")


#: Our severities on CEF's 0-10 scale (Low 0-3, Medium 4-6, High 7-8, Very-High 9-10).
CEF_SEVERITY: dict[Severity, int] = {
    Severity.INFO: 1, Severity.LOW: 3, Severity.MEDIUM: 5, Severity.HIGH: 8,
    Severity.CRITICAL: 10,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    allow_http: bool = False
    allow_private_network: bool = False
    ca_pem: str | None = None  # trust this CA (else the system's) for this receiver


@dataclass(frozen=True, slots=True)
class SyslogSettings:
    host: str
    port: int
    transport: SyslogTransport
    facility: str = "local0"
    app_name: str = "fleetguard"
    ca_pem: str | None = None  # TLS: trust this CA (else the system's)


@dataclass(frozen=True, slots=True)
class Destination:
    id: str
    name: str
    kind: DestinationKind
    enabled: bool
    min_severity: Severity
    webhook: WebhookSettings | None
    syslog: SyslogSettings | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None = None

    def wants(self, event: NotificationEvent) -> bool:
        return self.enabled and event.severity.rank >= self.min_severity.rank


@dataclass(frozen=True, slots=True)
class CreatedDestination:
    """A new destination, with its webhook secret: shown this once, never again."""

    destination: Destination
    secret: str | None


@dataclass(frozen=True, slots=True)
class DestinationChanges:
    """What an update changes (None: unchanged)."""

    name: str | None = None
    enabled: bool | None = None
    min_severity: Severity | None = None
    url: str | None = None
    allow_http: bool | None = None
    allow_private_network: bool | None = None
    host: str | None = None
    port: int | None = None
    transport: SyslogTransport | None = None
    facility: str | None = None
    app_name: str | None = None
    ca_pem: str | None = None
    clear_ca: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    destination_id: str
    event_id: str
    event_kind: str
    event_title: str
    occurred_at: datetime
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None  # None once it is no longer pending
    last_error: str | None
    last_status: int | None
    test: bool
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_cursor: str | None


@dataclass(slots=True)
class DeliveryCounts:
    """A destination's deliveries by state; ``retrying`` are the pending ones that failed
    at least once."""

    pending: int = 0
    retrying: int = 0
    delivered: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one try went: delivered, worth retrying (after ``retry_after`` if the receiver
    said), or refused for good."""

    delivered: bool
    retry: bool
    error: str | None = None
    status: int | None = None
    retry_after: float | None = None


@dataclass(slots=True)
class NotifierStats:
    """Counts since the notifier started (the outbox holds the lasting ones)."""

    published: int = 0
    overflowed: int = 0  # refused at publish: the handoff queue was full
    duplicates: int = 0  # an event id already in the outbox
    rejected: int = 0  # events whose body could not be JSON (logged, never stored)
    delivered: int = 0
    retried: int = 0  # attempts that failed and were scheduled again
    failed: int = 0  # deliveries that failed permanently
    store_errors: int = 0  # rounds of the worker that failed on the database
    queued: int = 0  # events in the handoff queue now


__all__ = [
    "CEF_SEVERITY",
    "RESERVED_CEF_KEYS",
    "SYSLOG_FACILITIES",
    "Attempt",
    "CreatedDestination",
    "Delivery",
    "DeliveryCounts",
    "DeliveryPage",
    "DeliveryState",
    "Destination",
    "DestinationChanges",
    "DestinationKind",
    "NotificationEvent",
    "NotifierStats",
    "SyslogSettings",
    "SyslogTransport",
    "WebhookSettings",
]
