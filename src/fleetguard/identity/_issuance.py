"""The one issuance path every enrollment takes (token, claim, renewal), and the prepared
statements of the enrollment hot path.

Private to identity: the public entry points are in ``service``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.identity.errors import KeyAlreadyBoundError
from fleetguard.identity.models import EnrolledVia, EnrollmentResult
from fleetguard.pki import FleetCA, load_csr, spki_sha256
from fleetguard.store import flushed_connection
from fleetguard.store.tables.identity import DeviceCertificateRow, EnrollmentTokenRow

_TOKENS: Table = EnrollmentTokenRow.__table__  # type: ignore[assignment]
_CERTIFICATES: Table = DeviceCertificateRow.__table__  # type: ignore[assignment]
# The enrollment path's statements, built once (building them per call cost more than
# running them). A token is consumed in the transaction that issues, so a refused CSR
# rolls the use back.
CONSUME_TOKEN = (
    update(_TOKENS)
    .where(_TOKENS.c.token_hash == bindparam("secret_hash"), _TOKENS.c.used_at.is_(None),
           _TOKENS.c.expires_at > bindparam("now"))
    .values(used_at=bindparam("now"))
    .returning(_TOKENS.c.device_id)
)
_KEY_BOUND = select(_CERTIFICATES.c.device_id).where(
    _CERTIFICATES.c.spki_sha256 == bindparam("spki")).limit(1)
_INSERT_CERTIFICATE = insert(_CERTIFICATES)
_KEY_BOUND_MESSAGE = ("this public key is already bound to a certificate; every enrollment "
                      "and renewal needs a fresh key pair")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def serial_hex(serial: int) -> str:
    """A certificate serial as the tables key it: lower-case hex, no leading zeros."""
    return format(serial, "x")


def refuse_unusable_csr(session: Session, csr: bytes | str) -> None:
    """Refuse a bad CSR or an already bound key before anything is created for it."""
    spki = spki_sha256(load_csr(csr).public_key())
    if flushed_connection(session).execute(_KEY_BOUND, {"spki": spki}).first() is not None:
        raise KeyAlreadyBoundError(_KEY_BOUND_MESSAGE)


def issue_device_certificate(
    session: Session, ca: FleetCA, *, device_id: str, csr: bytes | str, via: EnrolledVia,
    validity: timedelta, source: str,
) -> EnrollmentResult:
    # A key bound before is refused by the unique index on insert (below), which also
    # settles two enrollments racing with one key.
    issued = ca.issue_device_certificate(load_csr(csr), uuid.UUID(device_id), validity=validity)
    now = utcnow()
    serial = serial_hex(issued.serial_number)
    try:
        flushed_connection(session).execute(_INSERT_CERTIFICATE, {
            "serial_hex": serial, "device_id": device_id, "issuer_key_id": issued.issuer_key_id,
            "spki_sha256": issued.spki_sha256, "fingerprint_sha256": issued.fingerprint_sha256,
            "not_before": issued.not_before, "not_after": issued.not_after,
            "certificate_pem": issued.certificate_pem.decode(), "enrolled_via": via.value,
            "created_at": now,
        })
    except IntegrityError as exc:
        if "spki_sha256" not in str(exc.orig):
            raise
        raise KeyAlreadyBoundError(_KEY_BOUND_MESSAGE) from None
    append_audit_entry(
        session, actor=f"device:{device_id}", action=f"certificate.issue.{via.value}",
        target=f"certificate:{serial}",
        details={"device": device_id, "not_after": issued.not_after.isoformat(),
                 "fingerprint": issued.fingerprint_sha256, "source": source},
    )
    return EnrollmentResult(
        device_id=device_id, serial_hex=serial,
        certificate_pem=issued.certificate_pem.decode(), chain_pem=issued.chain_pem.decode(),
        ca_bundle_pem=ca.bundle_pem().decode(), not_after=issued.not_after,
    )
