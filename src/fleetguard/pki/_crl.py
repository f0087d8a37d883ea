"""Revocation lists: their numbering, their contents per CA, and where they are written."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from fleetguard.core.files import ensure_private_dir, write_atomic
from fleetguard.pki import _x509
from fleetguard.pki._backends import CaSigningKey
from fleetguard.pki.errors import CaStateCorruptError, InvalidCertificateParametersError
from fleetguard.pki.models import CaCertificate, CaRole, PublishedCrls, Revocation, SignedCrl

DEFAULT_CRL_LIFETIME = timedelta(days=2)
CRL_NUMBER = "crl-number"
COMBINED_CRL = "crls.pem"


def check_lifetime(lifetime: timedelta) -> None:
    if lifetime <= timedelta(0):
        raise InvalidCertificateParametersError("CRL lifetime must be positive")


def next_crl_number(ca_dir: Path) -> int:
    """Monotonic across runs and processes (the caller holds the CA directory's lock)."""
    path = ca_dir / CRL_NUMBER
    try:
        last = int(path.read_text().strip() or "0")
    except FileNotFoundError:
        last = 0
    except ValueError as exc:
        raise CaStateCorruptError(f"{path} does not hold a number") from exc
    ensure_private_dir(ca_dir)
    write_atomic(path, f"{last + 1}\n".encode())
    return last + 1


def sign_crls(
    signers: Iterable[tuple[CaCertificate, CaSigningKey]],
    revocations: Iterable[Revocation],
    *,
    number: int,
    now: datetime,
    lifetime: timedelta,
) -> list[SignedCrl]:
    """One CRL per CA, all with the same number.

    A revocation with ``issuer_key_id`` goes on that CA's CRL only; one without it on
    every issuing CA's CRL (never the root's: the root only revokes issuing CAs).
    """
    unique: dict[tuple[int, str | None], Revocation] = {}
    for entry in revocations:
        unique.setdefault((entry.serial_number, entry.issuer_key_id), entry)
    crls: list[SignedCrl] = []
    for ca, signer in signers:
        mine = (ca.key_id,) if ca.role is CaRole.ROOT else (None, ca.key_id)
        entries = [e for e in unique.values() if e.issuer_key_id in mine]
        crl = _x509.build_crl(
            signer, ca.certificate, entries,
            crl_number=number, this_update=now, next_update=now + lifetime,
        )
        crls.append(SignedCrl(ca.ca_id, ca.key_id, crl, number))
    return crls


def write_crls(directory: Path, crls: list[SignedCrl]) -> PublishedCrls:
    """``<ca_id>.crl.pem`` and ``.crl.der`` for each CA and all PEMs in ``crls.pem``,
    each written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for crl in crls:
        for suffix, data in ((".crl.pem", crl.pem), (".crl.der", crl.der)):
            path = directory / f"{crl.issuer_ca_id}{suffix}"
            write_atomic(path, data)
            files.append(path)
    combined = directory / COMBINED_CRL
    write_atomic(combined, b"".join(crl.pem for crl in crls))
    return PublishedCrls(directory=directory, crls=crls, combined_pem=combined, files=files)
