"""Devices, groups, certificates, claim batches and the fleet CA, for operators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from cryptography import x509
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from fleetguard.api.authz import requires
from fleetguard.api.context import AppContext, get_context
from fleetguard.api.schemas import (
    LABEL_QUERY,
    CaOut,
    CertificateOut,
    ClaimBatchCreate,
    ClaimBatchOut,
    ClaimIssued,
    DeviceCreate,
    DeviceOut,
    DevicePageOut,
    DeviceUpdate,
    EnrollmentTokenOut,
    GroupCreate,
    GroupOut,
    ImportResult,
    IssuingCaOut,
    Reason,
    RevokeRequest,
    SharedIdentityOut,
    StateChange,
    TokenTtl,
)
from fleetguard.core.errors import PayloadTooLargeError, ValidationFailedError
from fleetguard.identity import ClaimBatch, DeviceCertificate
from fleetguard.identity import service as identity
from fleetguard.operators import Permission, Principal
from fleetguard.pki import RevocationReason
from fleetguard.registry import Device, DeviceChanges, DeviceFilter, DeviceState, GroupKind
from fleetguard.registry import csv_exchange as device_csv
from fleetguard.registry import groups as device_groups
from fleetguard.registry import service as registry

router = APIRouter(prefix="/api/v1", tags=["devices"])
Ctx = Annotated[AppContext, Depends(get_context)]
Reader = Annotated[Principal, Depends(requires(Permission.DEVICES_READ))]
Writer = Annotated[Principal, Depends(requires(Permission.DEVICES_WRITE))]
PkiAdmin = Annotated[Principal, Depends(requires(Permission.PKI_ADMIN))]
MAX_CSV_BYTES = 8 * 1024 * 1024  # room for MAX_CSV_ROWS; the body limit lets it through
IMPORT_PATH = "/api/v1/devices/import"


def _device(d: Device) -> DeviceOut:
    return DeviceOut(
        id=d.id, name=d.name, serial=d.serial, hardware_model=d.hardware_model, vendor=d.vendor,
        labels=d.labels, state=d.state.value, firmware_version=d.firmware_version,
        last_seen_at=d.last_seen_at, addresses=d.addresses, groups=d.groups,
        created_at=d.created_at, updated_at=d.updated_at,
    )


def _cert(c: DeviceCertificate) -> CertificateOut:
    return CertificateOut(
        serial=c.serial_hex, device_id=c.device_id, fingerprint_sha256=c.fingerprint_sha256,
        spki_sha256=c.spki_sha256, not_before=c.not_before, not_after=c.not_after,
        enrolled_via=c.enrolled_via.value, revoked_at=c.revoked_at,
        revocation_reason=c.revocation_reason, first_seen_at=c.first_seen_at,
        last_seen_at=c.last_seen_at, last_seen_from=c.last_seen_from,
    )


def _batch(b: ClaimBatch) -> ClaimBatchOut:
    return ClaimBatchOut(batch_id=b.batch_id, name=b.name, serials=b.serials,
                         enrolled=b.enrolled, not_after=b.not_after, revoked_at=b.revoked_at)


def _state(value: str | None) -> DeviceState | None:
    if value is None:
        return None
    try:
        return DeviceState(value)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in DeviceState)
        raise ValidationFailedError(f"state must be one of {allowed}", field="state") from exc


def _filter(
    state: DeviceState | None, vendor: str | None, q: str | None, labels: str | None,
    group: str | None,
) -> DeviceFilter:
    return DeviceFilter(state=state, vendor=vendor, search=q, label_query=labels, group=group)


# Query parameters say what they take, so the published document is what is checked.
StateQ = Annotated[DeviceState | None, Query()]
LabelsQ = Annotated[str | None, Query(
    min_length=1, max_length=500, pattern=LABEL_QUERY,
    description="key=value, key!=value or key, comma-separated; all must hold",
)]


@router.get("/devices")
def list_devices(
    ctx: Ctx, _: Reader,
    state: StateQ = None,
    vendor: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=100, description="name, serial or id")] = None,
    labels: LabelsQ = None,
    group: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DevicePageOut:
    with ctx.db.session() as session:
        page = registry.list_devices(
            session, _filter(state, vendor, q, labels, group), cursor=cursor, limit=limit
        )
    return DevicePageOut(devices=[_device(d) for d in page.devices], next_cursor=page.next_cursor)


@router.post("/devices", status_code=201)
def register_device(body: DeviceCreate, ctx: Ctx, principal: Writer) -> DeviceOut:
    with ctx.db.session() as session:
        device = registry.register_device(
            session, name=body.name, serial=body.serial, hardware_model=body.hardware_model,
            vendor=body.vendor, firmware_version=body.firmware_version, labels=body.labels,
            actor=principal.actor,
        )
    return _device(device)


@router.get("/devices/export.csv", response_class=StreamingResponse)
def export_devices(
    ctx: Ctx, _: Reader, state: StateQ = None, labels: LabelsQ = None,
) -> StreamingResponse:
    flt = _filter(state, None, None, labels, None)
    session = ctx.db.sessions()
    try:  # a bad filter is a 4xx here, before the 200 and the first line are sent
        lines = device_csv.export_devices_csv(session, flt)
    except BaseException:
        session.close()
        raise

    def rows() -> Iterator[str]:
        try:
            yield from lines
        finally:
            session.close()

    return StreamingResponse(
        rows(), media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="devices.csv"'},
    )


@router.post(IMPORT_PATH.removeprefix(router.prefix), status_code=201, openapi_extra={
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {
        "type": "string", "maxLength": MAX_CSV_BYTES,
        "description": "a header row with at least 'name', then one device a row"}}}},
})
async def import_devices(request: Request, ctx: Ctx, principal: Writer) -> ImportResult:
    """CSV with a header row (id, name, serial, hardware_model, vendor, firmware_version,
    labels as k=v;k2=v2). All rows or none."""
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise PayloadTooLargeError("CSV over 8 MiB")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailedError("CSV must be UTF-8", field="csv") from exc

    def run() -> int:
        with ctx.db.session() as session:
            return device_csv.import_devices_csv(session, text, actor=principal.actor)

    from starlette.concurrency import run_in_threadpool

    return ImportResult(imported=await run_in_threadpool(run))


@router.get("/devices/{device_id}")
def get_device(device_id: str, ctx: Ctx, _: Reader) -> DeviceOut:
    with ctx.db.session() as session:
        return _device(registry.get_device(session, device_id))


@router.patch("/devices/{device_id}")
def update_device(device_id: str, body: DeviceUpdate, ctx: Ctx, principal: Writer) -> DeviceOut:
    changes = DeviceChanges(
        name=body.name, serial=body.serial, hardware_model=body.hardware_model,
        vendor=body.vendor, firmware_version=body.firmware_version, labels=body.labels,
        addresses=body.addresses,
    )
    with ctx.db.session() as session:
        return _device(registry.update_device(session, device_id, changes, actor=principal.actor))


@router.post("/devices/{device_id}/state")
def change_device_state(
    device_id: str, body: StateChange, ctx: Ctx, principal: Writer
) -> DeviceOut:
    """Activate, quarantine or suspend; decommissioning has its own route."""
    state = _state(body.state)
    if state not in (DeviceState.ACTIVE, DeviceState.QUARANTINED, DeviceState.SUSPENDED):
        raise ValidationFailedError("state must be active, quarantined or suspended",
                                    field="state")
    with ctx.db.session() as session:
        return _device(registry.set_device_state(
            session, device_id, state, actor=principal.actor, reason=body.reason
        ))


@router.post("/devices/{device_id}/decommission")
def decommission_device(
    device_id: str, body: Reason, ctx: Ctx, principal: Writer
) -> DeviceOut:
    """Final: revokes every certificate of the device at once."""
    with ctx.db.session() as session:
        return _device(ctx.decommission(
            session, ctx.fleet_ca(), device_id=device_id, actor=principal.actor,
            reason=body.reason,
        ))


@router.post("/devices/{device_id}/enrollment-token", status_code=201)
def create_enrollment_token(
    device_id: str, body: TokenTtl, ctx: Ctx, principal: Writer
) -> EnrollmentTokenOut:
    """A one-time token for this device; it carries the fleet root's fingerprint."""
    from datetime import timedelta

    ca = ctx.fleet_ca()
    with ctx.db.session() as session:
        token, expires = identity.create_enrollment_token(
            session, ca, device_id=device_id, actor=principal.actor, issuer=principal,
            ttl=timedelta(hours=body.ttl_hours),
        )
    return EnrollmentTokenOut(token=token, expires_at=expires,
                              root_fingerprint=ca.root_fingerprint)


@router.get("/devices/{device_id}/certificates")
def device_certificates(device_id: str, ctx: Ctx, _: Reader) -> list[CertificateOut]:
    with ctx.db.session() as session:
        registry.get_device(session, device_id)
        return [_cert(c) for c in identity.list_certificates(session, device_id=device_id)]


@router.get("/groups")
def list_groups(ctx: Ctx, _: Reader) -> list[GroupOut]:
    with ctx.db.session() as session:
        return [GroupOut(name=g.name, kind=g.kind.value, label_query=g.label_query,
                         created_at=g.created_at) for g in device_groups.list_groups(session)]


@router.post("/groups", status_code=201)
def create_group(body: GroupCreate, ctx: Ctx, principal: Writer) -> GroupOut:
    try:
        kind = GroupKind(body.kind)
    except ValueError as exc:
        raise ValidationFailedError("kind must be static or dynamic", field="kind") from exc
    with ctx.db.session() as session:
        g = device_groups.create_group(session, name=body.name, kind=kind,
                                  label_query=body.label_query, actor=principal.actor)
    return GroupOut(name=g.name, kind=g.kind.value, label_query=g.label_query,
                    created_at=g.created_at)


@router.put("/groups/{group}/members/{device_id}", status_code=204)
def add_group_member(group: str, device_id: str, ctx: Ctx, principal: Writer) -> None:
    with ctx.db.session() as session:
        device_groups.set_group_membership(session, group=group, device_id=device_id, member=True,
                                      actor=principal.actor)


@router.delete("/groups/{group}/members/{device_id}", status_code=204)
def remove_group_member(group: str, device_id: str, ctx: Ctx, principal: Writer) -> None:
    with ctx.db.session() as session:
        device_groups.set_group_membership(session, group=group, device_id=device_id, member=False,
                                      actor=principal.actor)


@router.get("/certificates")
def list_certificates(ctx: Ctx, _: Reader) -> list[CertificateOut]:
    with ctx.db.session() as session:
        return [_cert(c) for c in identity.list_certificates(session)]


@router.get("/certificates/shared-identity")
def shared_identity(ctx: Ctx, _: Reader) -> list[SharedIdentityOut]:
    """Certificates used from more than one address in the last minutes."""
    with ctx.db.session() as session:
        return [SharedIdentityOut(serial=a.serial_hex, device_id=a.device_id, sources=a.sources)
                for a in identity.shared_identity_alerts(session)]


@router.post("/certificates/{serial}/revoke")
def revoke_certificate(
    serial: str, body: RevokeRequest, ctx: Ctx, principal: Writer
) -> CertificateOut:
    try:
        reason = RevocationReason(body.reason)
    except ValueError as exc:
        allowed = ", ".join(r.value for r in RevocationReason)
        raise ValidationFailedError(f"reason must be one of {allowed}", field="reason") from exc
    with ctx.db.session() as session:
        return _cert(identity.revoke_certificate(
            session, ctx.fleet_ca(), serial_hex=serial, actor=principal.actor, reason=reason
        ))


@router.get("/ca")
def ca_status(ctx: Ctx, _: Reader) -> CaOut:
    """The fleet root, issuing CAs, and when the published CRL must be renewed."""
    ca = ctx.fleet_ca()
    crl_file = Path(ca.crl_directory) / "crls.pem"
    next_update = None
    if crl_file.exists():
        crl = x509.load_pem_x509_crl(crl_file.read_bytes())
        next_update = crl.next_update_utc
    return CaOut(
        fleet_name=ca.fleet_name, root_fingerprint=ca.root_fingerprint,
        root_not_after=ca.root.certificate.not_valid_after_utc,
        issuing_cas=[IssuingCaOut(ca_id=i.ca_id, status=i.status.value if i.status else "",
                                  not_after=i.certificate.not_valid_after_utc, key_id=i.key_id)
                     for i in ca.issuing_cas],
        crl_next_update=next_update,
    )


@router.get("/claim-batches")
def list_claim_batches(ctx: Ctx, _: Reader) -> list[ClaimBatchOut]:
    with ctx.db.session() as session:
        return [_batch(b) for b in identity.list_claim_batches(session)]


@router.post("/claim-batches", status_code=201)
def create_claim_batch(body: ClaimBatchCreate, ctx: Ctx, principal: PkiAdmin) -> ClaimIssued:
    """A claim key and certificate for a production batch; the key is shown only here."""
    from datetime import timedelta

    with ctx.db.session() as session:
        issued = identity.create_claim_batch(
            session, ctx.fleet_ca(), name=body.name, serials=body.serials,
            actor=principal.actor, issuer=principal,
            validity=timedelta(days=body.validity_days),
        )
    return ClaimIssued(batch=_batch(issued.batch), claim_key_pem=issued.key_pem,
                       claim_certificate_pem=issued.certificate_pem,
                       ca_bundle_pem=issued.ca_bundle_pem)


@router.post("/claim-batches/{batch_id}/revoke", status_code=204)
def revoke_claim_batch(batch_id: str, ctx: Ctx, principal: PkiAdmin) -> None:
    with ctx.db.session() as session:
        identity.revoke_claim_batch(session, ctx.fleet_ca(), batch_id=batch_id,
                                    actor=principal.actor)


@router.post("/claim-serials/{serial}/reopen", status_code=204)
def reopen_claim_serial(serial: str, ctx: Ctx, principal: Writer) -> None:
    """Let a serial enroll once more (e.g. after a factory reset)."""
    with ctx.db.session() as session:
        identity.reopen_claim_serial(session, serial=serial, actor=principal.actor)
