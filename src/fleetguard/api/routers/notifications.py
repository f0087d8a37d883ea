"""Notification destinations (signed webhooks, syslog) and their deliveries.

Reading needs ``alarms:read``; every change, a secret rotation or a test send needs
``notifications:write`` and is audited. A webhook's secret is in the answer that makes or
rotates it, and in no other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from fleetguard import notify
from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas_notify import (
    CreatedDestinationOut,
    DeliveryOut,
    DeliveryPageOut,
    DestinationCreate,
    DestinationOut,
    DestinationUpdate,
    SecretOut,
    WebhookCreate,
)
from fleetguard.notify import DeliveryState
from fleetguard.operators import Permission, Principal
from fleetguard.store.paging import canonical_id

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.ALARMS_READ))]
Writer = Annotated[Principal, Depends(requires(Permission.NOTIFICATIONS_WRITE))]


@router.get("/destinations")
def list_destinations(ctx: Ctx, _: Reader) -> list[DestinationOut]:
    """Every destination, with its deliveries counted by state."""
    with ctx.db.read_session() as session:
        destinations = notify.list_destinations(session)
        counts = notify.delivery_counts(session)
    return [DestinationOut.of(d, counts.get(d.id)) for d in destinations]


@router.post("/destinations", status_code=201)
def create_destination(
    body: DestinationCreate, ctx: Ctx, principal: Writer
) -> CreatedDestinationOut:
    """A webhook (``kind: webhook``; its HMAC secret is in this answer only) or a syslog
    collector (``kind: syslog``)."""
    hook = body.settings() if isinstance(body, WebhookCreate) else None
    syslog = None if isinstance(body, WebhookCreate) else body.settings()
    with ctx.db.session() as session:
        created = notify.create_destination(
            session, ctx.master_key, actor=principal.actor, name=body.name,
            min_severity=body.min_severity, webhook=hook, syslog=syslog, enabled=body.enabled,
        )  # fmt: skip
    out = DestinationOut.of(created.destination)
    return CreatedDestinationOut(**out.model_dump(), secret=created.secret)


@router.get("/destinations/{destination_id}")
def get_destination(destination_id: str, ctx: Ctx, _: Reader) -> DestinationOut:
    with ctx.db.read_session() as session:
        destination = notify.get_destination(session, destination_id)
        counts = notify.delivery_counts(session)
    return DestinationOut.of(destination, counts.get(destination.id))


@router.patch("/destinations/{destination_id}")
def update_destination(
    destination_id: str, body: DestinationUpdate, ctx: Ctx, principal: Writer
) -> DestinationOut:
    with ctx.db.session() as session:
        destination = notify.update_destination(session, destination_id, body.changes(),
                                                actor=principal.actor)
    return DestinationOut.of(destination)


@router.delete("/destinations/{destination_id}", status_code=204)
def delete_destination(destination_id: str, ctx: Ctx, principal: Writer) -> None:
    """The destination goes, with its deliveries (pending ones are not sent)."""
    with ctx.db.session() as session:
        notify.delete_destination(session, destination_id, actor=principal.actor)


@router.post("/destinations/{destination_id}/rotate-secret")
def rotate_secret(destination_id: str, ctx: Ctx, principal: Writer) -> SecretOut:
    """A new HMAC secret for a webhook, shown this once; the old one stops signing now."""
    with ctx.db.session() as session:
        secret = notify.rotate_webhook_secret(session, ctx.master_key, destination_id,
                                              actor=principal.actor)
    return SecretOut(secret=secret)


@router.post("/destinations/{destination_id}/test")
def send_test(destination_id: str, ctx: Ctx, principal: Writer) -> DeliveryOut:
    """Send a test event now, once (whatever the destination's filter), and say how it
    went: ``state`` delivered or failed, with the receiver's status or the error."""
    delivery = notify.send_test_event(ctx.db, ctx.master_key, destination_id,
                                      actor=principal.actor)
    return DeliveryOut.of(delivery)


@router.get("/deliveries")
def list_deliveries(
    ctx: Ctx, _: Reader,
    destination_id: Annotated[str | None, Query(max_length=36)] = None,
    state: Annotated[DeliveryState | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryPageOut:
    """Newest first, with each one's state, attempts, next attempt and last error."""
    if destination_id is not None:
        destination_id = canonical_id(destination_id, notify.DestinationNotFoundError,
                                      "notification destination")
    with ctx.db.read_session() as session:
        page = notify.list_deliveries(session, destination_id=destination_id, state=state,
                                      cursor=cursor, limit=limit)
    return DeliveryPageOut(deliveries=[DeliveryOut.of(d) for d in page.deliveries],
                           next_cursor=page.next_cursor)
