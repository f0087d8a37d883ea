"""Device identity: enrollment (token, claim, renewal), certificates and their revocation.

Whether a device may connect is decided in ``admission``.

The device's private key never reaches this code: certificates are issued from CSRs,
whose signature proves possession, and the server decides every name and extension.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import as_utc, utcnow
from fleetguard.core.errors import ValidationFailedError, excerpt
from fleetguard.identity._issuance import (
    CONSUME_TOKEN,
    issue_device_certificate,
    refuse_unusable_csr,
    serial_hex,
    sha256_hex,
)
from fleetguard.identity.errors import (
    CertificateNotFoundError,
    ClaimBatchExistsError,
    ClaimNotAllowedError,
    DeviceNotTrustedError,
    EnrollmentTokenInvalidError,
)
from fleetguard.identity.models import (
    CallerIdentity,
    ClaimBatch,
    DeviceCertificate,
    EnrolledVia,
    EnrollmentResult,
    ExpiringCertificate,
    ExpiringCertificates,
    IssuedClaim,
    SharedIdentityAlert,
)
from fleetguard.operators import Principal
from fleetguard.operators.minting import ensure_may_mint
from fleetguard.pki import (
    DEFAULT_DEVICE_VALIDITY,
    FleetCA,
    KeyAlgorithm,
    Revocation,
    RevocationReason,
)
from fleetguard.protocol import EnrollmentToken, parse_enrollment_token
from fleetguard.registry import TRUSTED_STATES, DeviceState
from fleetguard.registry import service as registry
from fleetguard.store import flushed_connection
from fleetguard.store.tables.identity import (
    CertificateUseRow,
    ClaimBatchRow,
    ClaimSerialRow,
    DeviceCertificateRow,
    EnrollmentTokenRow,
)

TOKEN_DEFAULT_TTL = timedelta(days=7)
TOKEN_MAX_TTL = timedelta(days=90)
SHARED_IDENTITY_WINDOW = timedelta(minutes=10)
MAX_CLAIM_SERIALS = 100_000


def _to_cert(row: DeviceCertificateRow) -> DeviceCertificate:
    return DeviceCertificate(
        serial_hex=row.serial_hex, device_id=row.device_id,
        fingerprint_sha256=row.fingerprint_sha256, spki_sha256=row.spki_sha256,
        not_before=row.not_before, not_after=row.not_after,
        enrolled_via=EnrolledVia(row.enrolled_via), revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason, first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at, last_seen_from=row.last_seen_from,
    )


# --- enrollment tokens -----------------------------------------------------------------


def create_enrollment_token(
    session: Session, ca: FleetCA, *, device_id: str, actor: str, issuer: Principal | None,
    ttl: timedelta = TOKEN_DEFAULT_TTL,
) -> tuple[str, datetime]:
    """A single-use token bound to one device; it carries the fleet root's fingerprint so
    the device can pin the platform from its first connection. It lives no longer than
    the credential that asks for it."""
    if not timedelta(minutes=1) <= ttl <= TOKEN_MAX_TTL:
        raise ValidationFailedError("token lifetime must be 1 minute to 90 days", field="ttl")
    ensure_may_mint(issuer, what="an enrollment token", expires_at=utcnow() + ttl)
    device = registry.get_device(session, device_id)
    if device.state not in TRUSTED_STATES:
        raise DeviceNotTrustedError(f"device {device.id} is {device.state.value}")
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(EnrollmentTokenRow(
        token_hash=sha256_hex(secret), device_id=device.id, created_at=now, expires_at=now + ttl,
    ))
    append_audit_entry(
        session, actor=actor, action="device.enrollment_token", target=f"device:{device.id}",
        details={"expires_at": (now + ttl).isoformat()},
    )
    return str(EnrollmentToken(secret, ca.root_fingerprint)), now + ttl


def enroll_with_token(
    session: Session, ca: FleetCA, *, token: str, csr: bytes | str, source: str,
    validity: timedelta = DEFAULT_DEVICE_VALIDITY,
) -> EnrollmentResult:
    parsed = parse_enrollment_token(token)
    if not hmac.compare_digest(parsed.root_fingerprint, ca.root_fingerprint):
        raise EnrollmentTokenInvalidError("this token belongs to another fleet")
    now = utcnow()
    device_id = flushed_connection(session).execute(
        CONSUME_TOKEN, {"secret_hash": sha256_hex(parsed.secret), "now": now}
    ).scalar()
    if device_id is None:
        raise EnrollmentTokenInvalidError("enrollment token unknown, expired or already used")
    state = registry.device_state(session, device_id, lock=True)
    if state not in TRUSTED_STATES:
        raise DeviceNotTrustedError(f"device {device_id} is {state.value}")
    result = issue_device_certificate(
        session, ca, device_id=device_id, csr=csr, via=EnrolledVia.TOKEN, validity=validity,
        source=source,
    )
    if state is DeviceState.REGISTERED:
        registry.transition_device_state(session, device_id, DeviceState.ACTIVE,
                                         actor=f"device:{device_id}", reason="enrolled",
                                         locked_state=state)
    return result


def renew_certificate(
    session: Session, ca: FleetCA, caller: CallerIdentity, *, csr: bytes | str, source: str,
    validity: timedelta = DEFAULT_DEVICE_VALIDITY,
) -> EnrollmentResult:
    """A device with a valid certificate gets one for a new key; the old stays valid
    until it expires, so a lost answer does not lock the device out."""
    if caller.kind != "device":
        raise ClaimNotAllowedError("a claim certificate may only enroll")
    return issue_device_certificate(
        session, ca, device_id=caller.subject_id, csr=csr, via=EnrolledVia.RENEWAL,
        validity=validity, source=source,
    )


# --- claim batches -----------------------------------------------------------------------


def _batch(row: ClaimBatchRow, session: Session) -> ClaimBatch:
    total, enrolled = session.execute(
        select(func.count(), func.count(ClaimSerialRow.enrolled_at))
        .where(ClaimSerialRow.batch_id == row.id)
    ).one()
    return ClaimBatch(row.id, row.name, total, enrolled, row.not_after, row.revoked_at)


def create_claim_batch(
    session: Session, ca: FleetCA, *, name: str, serials: Iterable[str], actor: str,
    issuer: Principal | None, validity: timedelta = timedelta(days=365),
) -> IssuedClaim:
    """A claim key and certificate for a production batch, with its serial allow-list.
    The certificate lives no longer than the credential that asks for it."""
    clean = name.strip()
    if not 1 <= len(clean) <= 100:
        raise ValidationFailedError("batch name must be 1-100 characters", field="name")
    ensure_may_mint(issuer, what="a claim certificate", expires_at=utcnow() + validity)
    if session.execute(
        select(ClaimBatchRow.id).where(ClaimBatchRow.name == clean)
    ).first() is not None:
        raise ClaimBatchExistsError(f"a claim batch named {excerpt(clean)} already exists")
    wanted = sorted({s.strip() for s in serials if s.strip()})
    if not wanted or len(wanted) > MAX_CLAIM_SERIALS:
        raise ValidationFailedError(f"give 1-{MAX_CLAIM_SERIALS} serials", field="serials")
    if any(len(s) > 128 for s in wanted):
        raise ValidationFailedError("serials are at most 128 characters", field="serials")
    taken = session.execute(
        select(ClaimSerialRow.serial).where(ClaimSerialRow.serial.in_(wanted[:1000]))
    ).first()
    if taken:
        raise ClaimNotAllowedError(f"serial {taken[0]!r} is already in a batch",
                                   code="claim_serial_taken")
    batch_id = uuid.uuid4()
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_claim_certificate(key.public_key(), batch_id, validity=validity)
    row = ClaimBatchRow(
        id=str(batch_id), name=clean, claim_serial_hex=serial_hex(issued.serial_number),
        not_after=issued.not_after, labels="{}", created_at=utcnow(),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same name, taken by a request that committed meanwhile
        raise ClaimBatchExistsError(
            f"a claim batch named {excerpt(clean)} already exists"
        ) from None
    for serial in wanted:
        session.add(ClaimSerialRow(batch_id=row.id, serial=serial))
    append_audit_entry(
        session, actor=actor, action="claim_batch.create", target=f"claim_batch:{row.id}",
        details={"name": clean, "serials": len(wanted), "not_after": row.not_after.isoformat()},
    )
    session.flush()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return IssuedClaim(_batch(row, session), key_pem, issued.chain_pem.decode(),
                       ca.bundle_pem().decode())


def enroll_with_claim(
    session: Session, ca: FleetCA, caller: CallerIdentity, *, serial: str, csr: bytes | str,
    source: str, validity: timedelta = DEFAULT_DEVICE_VALIDITY,
) -> EnrollmentResult:
    if caller.kind != "claim":
        raise ClaimNotAllowedError("claim enrollment needs the batch's claim certificate")
    claim = session.execute(
        select(ClaimSerialRow).where(
            ClaimSerialRow.batch_id == caller.subject_id, ClaimSerialRow.serial == serial.strip()
        ).with_for_update()
    ).scalar_one_or_none()
    if claim is None:
        raise ClaimNotAllowedError("this serial is not on the batch's allow-list")
    if claim.enrolled_at is not None:
        raise ClaimNotAllowedError(
            "this serial has already enrolled; an operator must reopen it first"
        )
    if claim.device_id is not None:
        device = registry.get_device(session, claim.device_id)
        if device.state not in TRUSTED_STATES:
            raise DeviceNotTrustedError(f"device {device.id} is {device.state.value}")
        device_id = device.id
    else:
        refuse_unusable_csr(session, csr)
        existing = registry.find_device_by_serial(session, claim.serial)
        if existing is not None:
            raise ClaimNotAllowedError("a device with this serial is already registered")
        device_id = registry.register_device(
            session, name=claim.serial, serial=claim.serial,
            actor=f"claim_batch:{caller.subject_id}", labels={"claim-batch": caller.subject_id},
        ).id
    result = issue_device_certificate(
        session, ca, device_id=device_id, csr=csr, via=EnrolledVia.CLAIM, validity=validity,
        source=source,
    )
    claim.device_id = device_id
    claim.enrolled_at = utcnow()
    if registry.device_state(session, device_id) is DeviceState.REGISTERED:
        registry.transition_device_state(session, device_id, DeviceState.ACTIVE,
                                         actor=f"device:{device_id}", reason="claimed")
    return result


def reopen_claim_serial(session: Session, *, serial: str, actor: str) -> None:
    row = session.execute(
        select(ClaimSerialRow).where(ClaimSerialRow.serial == serial)
    ).scalar_one_or_none()
    if row is None:
        raise CertificateNotFoundError(f"no claim serial {serial!r}", code="claim_serial_not_found")
    row.enrolled_at = None
    append_audit_entry(session, actor=actor, action="claim_serial.reopen",
                       target=f"claim_batch:{row.batch_id}", details={"serial": serial})


def list_claim_batches(session: Session) -> list[ClaimBatch]:
    rows = session.execute(select(ClaimBatchRow).order_by(ClaimBatchRow.created_at)).scalars()
    return [_batch(r, session) for r in rows]


# --- use records ------------------------------------------------------------------------


def shared_identity_alerts(
    session: Session, *, window: timedelta = SHARED_IDENTITY_WINDOW, now: datetime | None = None
) -> list[SharedIdentityAlert]:
    """Certificates used from more than one address within ``window``: a cloned identity."""
    since = (now or utcnow()) - window
    rows = session.execute(
        select(CertificateUseRow.serial_hex, CertificateUseRow.source,
               DeviceCertificateRow.device_id)
        .join(DeviceCertificateRow,
              DeviceCertificateRow.serial_hex == CertificateUseRow.serial_hex)
        .where(CertificateUseRow.last_seen_at >= since)
        .order_by(CertificateUseRow.serial_hex, CertificateUseRow.source)
    ).all()
    by_serial: dict[str, tuple[str, list[str]]] = {}
    for serial, source, device_id in rows:
        by_serial.setdefault(serial, (device_id, []))[1].append(source)
    return [SharedIdentityAlert(s, d, srcs) for s, (d, srcs) in by_serial.items() if len(srcs) > 1]


# --- certificates and revocation --------------------------------------------------------


def list_certificates(
    session: Session, *, device_id: str | None = None, limit: int = 500
) -> list[DeviceCertificate]:
    query = select(DeviceCertificateRow).order_by(DeviceCertificateRow.created_at.desc())
    if device_id:
        query = query.where(DeviceCertificateRow.device_id == device_id)
    return [_to_cert(r) for r in session.execute(query.limit(limit)).scalars()]


def expiring_certificates(
    session: Session, *, within: timedelta, now: datetime | None = None, soonest: int = 10
) -> ExpiringCertificates:
    """Unrevoked device certificates whose validity ends within ``within`` of ``now``: the
    exact count over the whole fleet (from the not_after index) and the ``soonest`` few."""
    now = now or utcnow()
    c = DeviceCertificateRow
    where = (c.revoked_at.is_(None), c.not_after >= now, c.not_after <= now + within)
    count = session.execute(select(func.count()).select_from(c).where(*where)).scalar_one()
    rows = session.execute(
        select(c.serial_hex, c.device_id, c.not_after).where(*where)
        .order_by(c.not_after, c.serial_hex).limit(max(0, soonest))
    ).all()  # fmt: skip
    return ExpiringCertificates(
        count=int(count), soonest=[ExpiringCertificate(s, d, as_utc(n)) for s, d, n in rows]
    )


def publish_crls(session: Session, ca: FleetCA) -> None:
    """Regenerate every CRL from the database: revoked, not yet expired certificates."""
    now = utcnow()
    revocations = [
        Revocation(int(r.serial_hex, 16), r.revoked_at or now,
                   RevocationReason(r.revocation_reason or "unspecified"), r.issuer_key_id)
        for r in session.execute(
            select(DeviceCertificateRow).where(
                DeviceCertificateRow.revoked_at.is_not(None), DeviceCertificateRow.not_after > now
            )
        ).scalars()
    ]
    revocations += [
        Revocation(int(b.claim_serial_hex, 16), b.revoked_at or now,
                   RevocationReason.PRIVILEGE_WITHDRAWN)
        for b in session.execute(
            select(ClaimBatchRow).where(
                ClaimBatchRow.revoked_at.is_not(None), ClaimBatchRow.not_after > now
            )
        ).scalars()
    ]
    ca.publish_crls(revocations)


CRL_REFRESH_MARGIN = timedelta(hours=24)


def crl_next_update(ca: FleetCA) -> datetime | None:
    """The earliest nextUpdate among the published CRLs (None when none is published)."""
    path = Path(ca.crl_directory) / "crls.pem"
    if not path.exists():
        return None
    data = path.read_bytes()
    stamps = []
    for block in data.split(b"-----END X509 CRL-----")[:-1]:
        crl = x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n")
        if crl.next_update_utc is not None:
            stamps.append(crl.next_update_utc)
    return min(stamps) if stamps else None


def refresh_crls_if_due(session: Session, ca: FleetCA, *, now: datetime | None = None) -> bool:
    """Republish well before nextUpdate, so relying parties never hold a stale CRL."""
    due = crl_next_update(ca)
    if due is not None and due - (now or utcnow()) > CRL_REFRESH_MARGIN:
        return False
    publish_crls(session, ca)
    return True


def revoke_certificate(
    session: Session, ca: FleetCA, *, serial_hex: str, actor: str,
    reason: RevocationReason = RevocationReason.UNSPECIFIED,
) -> DeviceCertificate:
    row = session.get(DeviceCertificateRow, serial_hex.lower().lstrip("0") or "0")
    if row is None:
        raise CertificateNotFoundError(f"no certificate with serial {serial_hex}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revocation_reason = reason.value
        append_audit_entry(
            session, actor=actor, action="certificate.revoke",
            target=f"certificate:{row.serial_hex}",
            details={"device": row.device_id, "reason": reason.value},
        )
        session.flush()
        publish_crls(session, ca)
    return _to_cert(row)


def retire_device_credentials(session: Session, ca: FleetCA, *, device_id: str, actor: str) -> int:
    """The device's unused enrollment tokens expire and its live certificates are revoked
    (cessation of operation), each revocation audited; the CRLs are published once.
    -> the number of certificates revoked."""
    now = utcnow()
    for token in session.execute(
        select(EnrollmentTokenRow).where(
            EnrollmentTokenRow.device_id == device_id, EnrollmentTokenRow.used_at.is_(None)
        )
    ).scalars():
        token.expires_at = now
    revoked = 0
    for row in session.execute(
        select(DeviceCertificateRow).where(
            DeviceCertificateRow.device_id == device_id, DeviceCertificateRow.revoked_at.is_(None)
        )
    ).scalars():
        row.revoked_at = now
        row.revocation_reason = RevocationReason.CESSATION_OF_OPERATION.value
        revoked += 1
        append_audit_entry(
            session, actor=actor, action="certificate.revoke",
            target=f"certificate:{row.serial_hex}",
            details={"device": device_id, "reason": RevocationReason.CESSATION_OF_OPERATION.value},
        )
    session.flush()
    if revoked:
        publish_crls(session, ca)
    return revoked


def revoke_claim_batch(session: Session, ca: FleetCA, *, batch_id: str, actor: str) -> None:
    row = session.get(ClaimBatchRow, batch_id)
    if row is None:
        raise CertificateNotFoundError(f"no claim batch {batch_id}", code="claim_batch_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        append_audit_entry(session, actor=actor, action="claim_batch.revoke",
                           target=f"claim_batch:{batch_id}")
        session.flush()
        publish_crls(session, ca)


def rotate_issuing_ca(
    session: Session, ca: FleetCA, *, actor: str, key_algorithm: KeyAlgorithm | None = None
) -> str:
    """A new issuing CA takes over; the new CA gets its CRL at once."""
    new = ca.rotate_issuing_ca(key_algorithm=key_algorithm)
    publish_crls(session, ca)
    append_audit_entry(session, actor=actor, action="ca.rotate", target=f"ca:{new.ca_id}",
                       details={"key_algorithm": new.key_algorithm.value})
    return new.ca_id
