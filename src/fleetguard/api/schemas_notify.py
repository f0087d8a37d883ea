"""Request and response models of the notification routes (destinations, deliveries)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Body
from pydantic import BaseModel, Field, StrictBool

from fleetguard.api.schemas import JSON_INTEGER, StrictModel
from fleetguard.core.severity import Severity
from fleetguard.notify import (
    SYSLOG_FACILITIES,
    Delivery,
    DeliveryCounts,
    DeliveryState,
    Destination,
    DestinationChanges,
    SyslogSettings,
    SyslogTransport,
    WebhookSettings,
)
from fleetguard.notify.webhook import shown_url

Name = Annotated[str, Field(min_length=1, max_length=100)]
CaPem = Annotated[str, Field(min_length=1, max_length=65536,
                             description="PEM certificates of the CA to trust (the content, "
                                         "never a path on the server)")]
Facility = Annotated[str, Field(min_length=1, max_length=16, description="e.g. local0",
                                 json_schema_extra={"enum": list(SYSLOG_FACILITIES)})]
AppName = Annotated[str, Field(min_length=1, max_length=48)]
Port = Annotated[int, Field(ge=1, le=65535), JSON_INTEGER]


class WebhookCreate(StrictModel):
    kind: Literal["webhook"]
    name: Name
    url: str = Field(min_length=1, max_length=2000, description="https:// URL to POST to")
    min_severity: Severity = Severity.LOW
    enabled: StrictBool = True
    allow_http: StrictBool = Field(default=False, description="send over plain http://")
    allow_private_network: StrictBool = Field(
        default=False, description="allow private and loopback addresses (never link-local "
                                   "or metadata addresses)")
    ca_pem: CaPem | None = None

    def settings(self) -> WebhookSettings:
        return WebhookSettings(url=self.url, allow_http=self.allow_http,
                               allow_private_network=self.allow_private_network,
                               ca_pem=self.ca_pem)


class SyslogCreate(StrictModel):
    kind: Literal["syslog"]
    name: Name
    host: str = Field(min_length=1, max_length=253)
    port: Port = 514
    transport: SyslogTransport = SyslogTransport.TCP
    facility: Facility = "local0"
    app_name: AppName = "fleetguard"
    min_severity: Severity = Severity.LOW
    enabled: StrictBool = True
    ca_pem: CaPem | None = None

    def settings(self) -> SyslogSettings:
        return SyslogSettings(host=self.host, port=self.port, transport=self.transport,
                              facility=self.facility, app_name=self.app_name,
                              ca_pem=self.ca_pem)


DestinationCreate = Annotated[WebhookCreate | SyslogCreate, Body(discriminator="kind")]


class DestinationUpdate(StrictModel):
    """Fields to change; those absent stay. ``ca_pem: null`` removes a custom CA."""

    name: Name | None = None
    enabled: StrictBool | None = None
    min_severity: Severity | None = None
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    allow_http: StrictBool | None = None
    allow_private_network: StrictBool | None = None
    host: str | None = Field(default=None, min_length=1, max_length=253)
    port: Port | None = None
    transport: SyslogTransport | None = None
    facility: Facility | None = None
    app_name: AppName | None = None
    ca_pem: CaPem | None = None

    def changes(self) -> DestinationChanges:
        clear_ca = "ca_pem" in self.model_fields_set and self.ca_pem is None
        return DestinationChanges(
            name=self.name, enabled=self.enabled, min_severity=self.min_severity, url=self.url,
            allow_http=self.allow_http, allow_private_network=self.allow_private_network,
            host=self.host, port=self.port, transport=self.transport, facility=self.facility,
            app_name=self.app_name, ca_pem=self.ca_pem, clear_ca=clear_ca,
        )  # fmt: skip


class DeliveryCountsOut(BaseModel):
    pending: int = Field(description="not delivered yet (retrying included)")
    retrying: int = Field(description="pending after at least one failed attempt")
    delivered: int
    failed: int = Field(description="failed for good")


class DestinationOut(BaseModel):
    """A destination; a webhook's secret is never shown (its URL's query is hidden)."""

    id: str
    name: str
    kind: str
    enabled: bool
    min_severity: Severity
    url: str | None = None
    allow_http: bool | None = None
    allow_private_network: bool | None = None
    host: str | None = None
    port: int | None = None
    transport: SyslogTransport | None = None
    facility: str | None = None
    app_name: str | None = None
    custom_ca: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None
    deliveries: DeliveryCountsOut

    @classmethod
    def of(cls, d: Destination, counts: DeliveryCounts | None = None) -> DestinationOut:
        counts = counts or DeliveryCounts()
        extra: dict[str, object] = {}
        if d.webhook is not None:
            extra = {"url": shown_url(d.webhook.url), "allow_http": d.webhook.allow_http,
                     "allow_private_network": d.webhook.allow_private_network,
                     "custom_ca": d.webhook.ca_pem is not None}
        if d.syslog is not None:
            s = d.syslog
            extra = {"host": s.host, "port": s.port, "transport": s.transport,
                     "facility": s.facility, "app_name": s.app_name,
                     "custom_ca": s.ca_pem is not None}
        return cls(
            id=d.id, name=d.name, kind=d.kind.value, enabled=d.enabled,
            min_severity=d.min_severity, created_by=d.created_by, created_at=d.created_at,
            updated_at=d.updated_at, secret_rotated_at=d.secret_rotated_at,
            deliveries=DeliveryCountsOut(pending=counts.pending, retrying=counts.retrying,
                                         delivered=counts.delivered, failed=counts.failed),
            **extra,
        )  # fmt: skip


class CreatedDestinationOut(DestinationOut):
    secret: str | None = Field(
        description="a webhook's HMAC secret: shown this once, never again (null for syslog)")


class SecretOut(BaseModel):
    secret: str = Field(description="the new HMAC secret: shown this once, never again")


class DeliveryOut(BaseModel):
    id: int
    destination_id: str
    event_id: str
    event_kind: str
    event_title: str
    occurred_at: datetime
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status: int | None
    test: bool
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id, destination_id=d.destination_id, event_id=d.event_id,
            event_kind=d.event_kind, event_title=d.event_title, occurred_at=d.occurred_at,
            state=d.state, attempts=d.attempts, next_attempt_at=d.next_attempt_at,
            last_error=d.last_error, last_status=d.last_status, test=d.test,
            created_at=d.created_at, finished_at=d.finished_at,
        )  # fmt: skip


class DeliveryPageOut(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


__all__ = [
    "CreatedDestinationOut",
    "DeliveryOut",
    "DeliveryPageOut",
    "DestinationCreate",
    "DestinationOut",
    "DestinationUpdate",
    "SecretOut",
    "SyslogCreate",
    "WebhookCreate",
]
