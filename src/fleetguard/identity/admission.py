"""May this device connect: identity's one answer, for the device endpoint and the broker.

A device may connect while it holds a certificate that is unrevoked and valid now, and
the registry has it in a trusted state (:func:`connect_refusal`). The device endpoint
asks per request (:func:`authenticate_peer_certificate`, which also checks that the
certificate is the very one this platform issued); the broker asks for the whole fleet
at once (:func:`devices_entitled_to_connect`) and mirrors the answer into Mosquitto.
Both apply the one rule (the fleet query states its certificate half in SQL, right beside
it), so the two channels cannot disagree.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from cryptography import x509
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.identity._issuance import serial_hex
from fleetguard.identity.errors import DeviceCertificateRejectedError, DeviceNotTrustedError
from fleetguard.identity.models import CallerIdentity
from fleetguard.pki import CLAIM_URI_PREFIX, DEVICE_URI_PREFIX
from fleetguard.registry import TRUSTED_STATES
from fleetguard.registry import service as registry
from fleetguard.registry.listing import device_ids_in_state
from fleetguard.store.tables.identity import (
    CertificateUseRow,
    ClaimBatchRow,
    DeviceCertificateRow,
)

USE_RECORD_GRANULARITY = timedelta(seconds=60)


class ConnectRefusal(StrEnum):
    """Why a device may not connect with a certificate it holds."""

    REVOKED = "certificate has been revoked"
    NOT_VALID_NOW = "certificate is not valid now"
    DEVICE_NOT_TRUSTED = "device is not in a trusted state"


class CertificateValidity(Protocol):
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def not_before(self) -> datetime: ...
    @property
    def not_after(self) -> datetime: ...


def connect_refusal(
    certificate: CertificateValidity, *, device_trusted: bool, now: datetime
) -> ConnectRefusal | None:
    """The rule itself: None when the certificate's holder may connect at ``now``."""
    if certificate.revoked_at is not None:
        return ConnectRefusal.REVOKED
    if not certificate.not_before <= now < certificate.not_after:
        return ConnectRefusal.NOT_VALID_NOW
    if not device_trusted:
        return ConnectRefusal.DEVICE_NOT_TRUSTED
    return None


def _live_certificate(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """:func:`connect_refusal`'s certificate conditions, in SQL, for the whole fleet at once
    (reading every certificate's dates into Python to ask it cost the broker's loop three
    times as much at 10,000 devices). Kept beside it; test_admission holds them equal."""
    c = DeviceCertificateRow
    return (c.revoked_at.is_(None), c.not_before <= now, c.not_after > now)


def devices_entitled_to_connect(session: Session, *, now: datetime | None = None) -> set[str]:
    """Every device that :func:`connect_refusal` lets connect now, with some certificate."""
    now = now or utcnow()
    holders = session.execute(
        select(DeviceCertificateRow.device_id).where(*_live_certificate(now))
    ).scalars()
    trusted = frozenset().union(*(device_ids_in_state(session, s) for s in TRUSTED_STATES))
    return {str(device_id) for device_id in holders if device_id in trusted}


def revoked_device_certificates(
    session: Session, *, now: datetime | None = None
) -> dict[str, str]:
    """Serial (hex) -> device id of every revoked certificate that has not expired."""
    now = now or utcnow()
    c = DeviceCertificateRow
    rows = session.execute(
        select(c.serial_hex, c.device_id).where(c.revoked_at.is_not(None), c.not_after > now)
    ).all()
    return {str(serial): str(device) for serial, device in rows}


def _uri_of(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound as exc:
        raise DeviceCertificateRejectedError("certificate names no fleetguard identity") from exc
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise DeviceCertificateRejectedError("certificate names no single fleetguard identity")
    return uris[0]


def _record_use(session: Session, row: DeviceCertificateRow, source: str) -> None:
    """Identity's own record of where a certificate is used (a clone shows as two places).
    The device's last-seen is not written here: its one writer is telemetry's ingest."""
    now = utcnow()
    if row.first_seen_at is None:
        row.first_seen_at = now
    fresh = row.last_seen_at is None or now - row.last_seen_at > USE_RECORD_GRANULARITY
    if fresh or row.last_seen_from != source:
        row.last_seen_at = now
        row.last_seen_from = source
        use = session.get(CertificateUseRow, (row.serial_hex, source))
        if use is None:
            session.add(CertificateUseRow(serial_hex=row.serial_hex, source=source,
                                          first_seen_at=now, last_seen_at=now, uses=1))
        else:
            use.last_seen_at = now
            use.uses += 1


def _authenticate_claim(session: Session, uri: str, serial: str) -> CallerIdentity:
    batch = session.execute(
        select(ClaimBatchRow).where(ClaimBatchRow.claim_serial_hex == serial)
    ).scalar_one_or_none()
    if batch is None or batch.revoked_at is not None or uri != CLAIM_URI_PREFIX + batch.id:
        raise DeviceCertificateRejectedError("claim certificate unknown or revoked")
    return CallerIdentity("claim", batch.id, serial)


def authenticate_peer_certificate(
    session: Session, der: bytes | None, *, source: str
) -> CallerIdentity:
    """Decide, on every request, whether the TLS-verified peer certificate still counts."""
    if not der:
        raise DeviceCertificateRejectedError("a client certificate is required")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise DeviceCertificateRejectedError("unreadable client certificate") from exc
    serial = serial_hex(cert.serial_number)
    uri = _uri_of(cert)
    if uri.startswith(CLAIM_URI_PREFIX):
        return _authenticate_claim(session, uri, serial)
    if not uri.startswith(DEVICE_URI_PREFIX):
        raise DeviceCertificateRejectedError("not a fleetguard device certificate")
    row = session.get(DeviceCertificateRow, serial)
    if row is None or row.fingerprint_sha256 != hashlib.sha256(der).hexdigest():
        raise DeviceCertificateRejectedError("certificate was not issued by this platform")
    if uri != DEVICE_URI_PREFIX + row.device_id:
        raise DeviceCertificateRejectedError("certificate names another device")
    state = registry.device_state(session, row.device_id)
    refusal = connect_refusal(row, device_trusted=state in TRUSTED_STATES, now=utcnow())
    if refusal is ConnectRefusal.DEVICE_NOT_TRUSTED:
        raise DeviceNotTrustedError(f"device is {state.value}")
    if refusal is not None:
        raise DeviceCertificateRejectedError(refusal.value)
    _record_use(session, row, source)
    return CallerIdentity("device", row.device_id, serial)
