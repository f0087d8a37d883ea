"""Destinations: webhooks and syslog collectors, with their settings checked and every
change in the audit log. A webhook's HMAC secret is sealed under the master key
(``keys.stored``), shown once when made or rotated, never read back by the API."""

from __future__ import annotations

import base64
import json
import os
import ssl
import uuid
from dataclasses import fields, replace
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.severity import Severity
from fleetguard.keys import MasterKey
from fleetguard.keys.stored import delete_stored_secret, open_stored_secret, store_sealed_secret
from fleetguard.notify.addresses import literal_address, resolve_checked
from fleetguard.notify.errors import (
    DestinationExistsError,
    DestinationNotFoundError,
    NotAWebhookError,
    invalid_destination,
)
from fleetguard.notify.models import (
    SYSLOG_FACILITIES,
    CreatedDestination,
    Destination,
    DestinationChanges,
    DestinationKind,
    SyslogSettings,
    SyslogTransport,
    WebhookSettings,
)
from fleetguard.notify.webhook import shown_url, validate_url
from fleetguard.store.paging import row_by_id
from fleetguard.store.tables.notify import NotificationDestinationRow

SECRET_PURPOSE = "notify.webhook"  # noqa: S105 - a label, not a secret
MAX_CA_PEM = 64 * 1024
_SEVERITY_BY_RANK = {s.rank: s for s in Severity}


def _secret_context(destination_id: str) -> str:
    return f"notify-webhook:{destination_id}"


def new_secret() -> str:
    return "whsec_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def to_destination(row: NotificationDestinationRow) -> Destination:
    data: dict[str, Any] = json.loads(row.settings)
    kind = DestinationKind(row.kind)
    webhook = WebhookSettings(**data) if kind is DestinationKind.WEBHOOK else None
    syslog = None
    if kind is DestinationKind.SYSLOG:
        syslog = SyslogSettings(**{**data, "transport": SyslogTransport(data["transport"])})
    return Destination(
        id=row.id, name=row.name, kind=kind, enabled=row.enabled,
        min_severity=_SEVERITY_BY_RANK[row.min_severity_rank], webhook=webhook, syslog=syslog,
        created_by=row.created_by, created_at=row.created_at, updated_at=row.updated_at,
        secret_rotated_at=row.secret_rotated_at,
    )  # fmt: skip


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise invalid_destination("name must be 1-100 printable characters", "name")
    return name


def _check_ca(ca_pem: str | None) -> None:
    if ca_pem is None:
        return
    if len(ca_pem) > MAX_CA_PEM or "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise invalid_destination("ca_pem must be PEM certificates (the content, not a path)",
                                  "ca_pem")
    try:
        ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError):
        raise invalid_destination("ca_pem holds no certificate that can be read", "ca_pem") \
            from None


def check_webhook(settings: WebhookSettings) -> None:
    if len(settings.url) > 2000:
        raise invalid_destination("url must be at most 2000 characters", "url")
    validate_url(settings)
    _check_ca(settings.ca_pem)


def check_syslog(settings: SyslogSettings) -> None:
    host = settings.host.strip()
    if not host or len(host) > 253 or any(c.isspace() or c in "/@?#" for c in host):
        raise invalid_destination("host must be a host name or an address", "host")
    if not 1 <= settings.port <= 65535:
        raise invalid_destination("port must be 1-65535", "port")
    if settings.facility not in SYSLOG_FACILITIES:
        raise invalid_destination(
            f"facility must be one of {', '.join(SYSLOG_FACILITIES)}", "facility")
    if not 1 <= len(settings.app_name) <= 48 or not all(
            33 <= ord(c) <= 126 for c in settings.app_name):
        raise invalid_destination("app_name must be 1-48 printable ASCII characters without "
                                  "spaces", "app_name")
    if settings.ca_pem is not None and settings.transport is not SyslogTransport.TLS:
        raise invalid_destination("ca_pem is for the tls transport only", "ca_pem")
    _check_ca(settings.ca_pem)
    if literal_address(host) is not None:
        resolve_checked(host, settings.port, allow_private=True)


def _settings_json(destination: Destination) -> str:
    settings: Any = destination.webhook or destination.syslog
    data = {f.name: getattr(settings, f.name) for f in fields(settings)}
    return json.dumps(data, default=str, sort_keys=True)


def _audit_details(destination: Destination) -> dict[str, Any]:
    details: dict[str, Any] = {"name": destination.name, "kind": destination.kind.value,
                               "enabled": destination.enabled,
                               "min_severity": destination.min_severity.value}
    if destination.webhook is not None:
        details.update(url=shown_url(destination.webhook.url),
                       allow_http=destination.webhook.allow_http,
                       allow_private_network=destination.webhook.allow_private_network,
                       custom_ca=destination.webhook.ca_pem is not None)
    if destination.syslog is not None:
        s = destination.syslog
        details.update(host=s.host, port=s.port, transport=s.transport.value,
                       facility=s.facility, app_name=s.app_name, custom_ca=s.ca_pem is not None)
    return details


def _name_taken(session: Session, name: str, other_than: str | None = None) -> bool:
    query = select(NotificationDestinationRow.id).where(NotificationDestinationRow.name == name)
    found = session.execute(query).scalar_one_or_none()
    return found is not None and found != other_than


def create_destination(
    session: Session, master: MasterKey, *, actor: str, name: str, min_severity: Severity,
    webhook: WebhookSettings | None = None, syslog: SyslogSettings | None = None,
    enabled: bool = True,
) -> CreatedDestination:
    """A new destination (exactly one of ``webhook`` or ``syslog``); a webhook's secret is
    made here and returned this once."""
    if (webhook is None) == (syslog is None):
        raise invalid_destination("give a webhook or a syslog destination", "kind")
    name = _check_name(name)
    if webhook is not None:
        check_webhook(webhook)
    if syslog is not None:
        syslog = replace(syslog, host=syslog.host.strip())
        check_syslog(syslog)
    if _name_taken(session, name):
        raise DestinationExistsError(f"a notification destination named {name!r} exists")
    now = utcnow()
    destination = Destination(
        id=str(uuid.uuid4()), name=name,
        kind=DestinationKind.WEBHOOK if webhook else DestinationKind.SYSLOG, enabled=enabled,
        min_severity=min_severity, webhook=webhook, syslog=syslog, created_by=actor[:200],
        created_at=now, updated_at=now,
    )  # fmt: skip
    row = NotificationDestinationRow(
        id=destination.id, name=name, kind=destination.kind.value, enabled=enabled,
        min_severity_rank=min_severity.rank, settings=_settings_json(destination),
        created_by=destination.created_by, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    secret = None
    if webhook is not None:
        secret = new_secret()
        row.secret_id = store_sealed_secret(session, master, purpose=SECRET_PURPOSE,
                                            context=_secret_context(row.id),
                                            secret=secret.encode())
    append_audit_entry(session, actor=actor, action="notification_destination.create",
                       target=f"notification_destination:{row.id}",
                       details=_audit_details(destination))
    return CreatedDestination(destination, secret)


def _row(session: Session, destination_id: str, *, lock: bool = False
         ) -> NotificationDestinationRow:
    return row_by_id(session, NotificationDestinationRow, destination_id,
                     DestinationNotFoundError, "notification destination", lock=lock)


def get_destination(session: Session, destination_id: str) -> Destination:
    return to_destination(_row(session, destination_id))


def list_destinations(session: Session) -> list[Destination]:
    rows = session.execute(select(NotificationDestinationRow)
                           .order_by(NotificationDestinationRow.name)).scalars()
    return [to_destination(r) for r in rows]


_T = TypeVar("_T")


def _pick(new: _T | None, old: _T) -> _T:
    return old if new is None else new


def _changed_webhook(hook: WebhookSettings, changes: DestinationChanges) -> WebhookSettings:
    if changes.host is not None or changes.port is not None or changes.transport \
            or changes.facility is not None or changes.app_name is not None:
        raise invalid_destination("a webhook has no host, port, transport, facility or "
                                  "app_name: change its url", "kind")
    return WebhookSettings(
        url=_pick(changes.url, hook.url), allow_http=_pick(changes.allow_http, hook.allow_http),
        allow_private_network=_pick(changes.allow_private_network, hook.allow_private_network),
        ca_pem=None if changes.clear_ca else _pick(changes.ca_pem, hook.ca_pem),
    )  # fmt: skip


def _changed_syslog(s: SyslogSettings, changes: DestinationChanges) -> SyslogSettings:
    if changes.url is not None or changes.allow_http is not None \
            or changes.allow_private_network is not None:
        raise invalid_destination("a syslog destination has no url: change its host", "kind")
    return SyslogSettings(
        host=_pick(changes.host, s.host).strip(), port=_pick(changes.port, s.port),
        transport=_pick(changes.transport, s.transport),
        facility=_pick(changes.facility, s.facility), app_name=_pick(changes.app_name, s.app_name),
        ca_pem=None if changes.clear_ca else _pick(changes.ca_pem, s.ca_pem),
    )  # fmt: skip


def _changed(destination: Destination, changes: DestinationChanges) -> Destination:
    return replace(
        destination, name=_pick(changes.name, destination.name),
        enabled=_pick(changes.enabled, destination.enabled),
        min_severity=_pick(changes.min_severity, destination.min_severity),
        webhook=None if destination.webhook is None
        else _changed_webhook(destination.webhook, changes),
        syslog=None if destination.syslog is None
        else _changed_syslog(destination.syslog, changes),
    )  # fmt: skip


def update_destination(
    session: Session, destination_id: str, changes: DestinationChanges, *, actor: str
) -> Destination:
    row = _row(session, destination_id, lock=True)
    before = to_destination(row)
    after = _changed(before, changes)
    name = _check_name(after.name)
    if after.webhook is not None:
        check_webhook(after.webhook)
    if after.syslog is not None:
        check_syslog(after.syslog)
    if name != before.name and _name_taken(session, name, other_than=row.id):
        raise DestinationExistsError(f"a notification destination named {name!r} exists")
    row.name, row.enabled = name, after.enabled
    row.min_severity_rank = after.min_severity.rank
    row.settings = _settings_json(after)
    row.updated_at = utcnow()
    old, new = _audit_details(before), _audit_details(after)
    append_audit_entry(session, actor=actor, action="notification_destination.update",
                       target=f"notification_destination:{row.id}",
                       details={"changed": {k: [old.get(k), v] for k, v in new.items()
                                            if old.get(k) != v}})
    return to_destination(row)


def delete_destination(session: Session, destination_id: str, *, actor: str) -> None:
    """The destination and its deliveries (pending ones are not sent) go."""
    row = _row(session, destination_id, lock=True)
    append_audit_entry(session, actor=actor, action="notification_destination.delete",
                       target=f"notification_destination:{row.id}",
                       details={"name": row.name, "kind": row.kind})
    if row.secret_id is not None:
        delete_stored_secret(session, row.secret_id)
    session.delete(row)
    session.flush()


def rotate_webhook_secret(
    session: Session, master: MasterKey, destination_id: str, *, actor: str
) -> str:
    """A new secret for a webhook, returned this once; every attempt from now on is signed
    with it (the old one stops at once)."""
    row = _row(session, destination_id, lock=True)
    if row.kind != DestinationKind.WEBHOOK.value:
        raise NotAWebhookError("only a webhook has a secret to rotate")
    secret = new_secret()
    old_id = row.secret_id
    row.secret_id = store_sealed_secret(session, master, purpose=SECRET_PURPOSE,
                                        context=_secret_context(row.id), secret=secret.encode())
    if old_id is not None:
        delete_stored_secret(session, old_id)
    row.secret_rotated_at = row.updated_at = utcnow()
    append_audit_entry(session, actor=actor, action="notification_destination.rotate_secret",
                       target=f"notification_destination:{row.id}", details={"name": row.name})
    return secret


def webhook_secret(session: Session, master: MasterKey, destination_id: str) -> str | None:
    """The webhook's secret, for signing (never for showing)."""
    row = session.get(NotificationDestinationRow, destination_id)
    if row is None or row.secret_id is None:
        return None
    raw = open_stored_secret(session, master, row.secret_id,
                             context=_secret_context(destination_id))
    return None if raw is None else raw.decode()


__all__ = [
    "SECRET_PURPOSE",
    "check_syslog",
    "check_webhook",
    "create_destination",
    "delete_destination",
    "get_destination",
    "list_destinations",
    "rotate_webhook_secret",
    "to_destination",
    "update_destination",
    "webhook_secret",
]
