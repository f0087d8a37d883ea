"""The CA directory's state: the manifest, the CA certificates and the trust bundle.

Layout of the CA directory (``<data_dir>/ca`` by convention)::

    manifest.json          which CAs exist, where their keys live, which one is active
    root-<id>.pem          the root certificate
    issuing-<id>.pem       one per issuing CA, active or retired
    bundle.pem             root + every unexpired issuing CA: the trust bundle
    keys/<id>.key.sealed   sealed PKCS#8 keys (file backend only, mode 0600)
    crl/                   published CRLs (see ``FleetCA.publish_crls``)
    crl-number             the last CRL number used
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fleetguard.core.files import write_atomic
from fleetguard.pki.errors import CaNotFoundError, CaStateCorruptError
from fleetguard.pki.models import (
    CaCertificate,
    CaRole,
    IssuingCaStatus,
    KeyAlgorithm,
    KeyReference,
)

MANIFEST = "manifest.json"
BUNDLE = "bundle.pem"
CRL_DIR = "crl"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class CaState:
    """What the manifest records: the fleet's CAs and which issuing CA is active."""

    fleet_name: str
    key_backend: str
    root: CaCertificate
    issuing: tuple[CaCertificate, ...]
    active_id: str

    @property
    def active(self) -> CaCertificate:
        return self.issuing_ca(self.active_id)

    def issuing_ca(self, ca_id: str) -> CaCertificate:
        return next(ca for ca in self.issuing if ca.ca_id == ca_id)


def _entry_json(ca: CaCertificate, certificate_file: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ca_id": ca.ca_id,
        "certificate": certificate_file,
        "key": {"backend": ca.key.backend, "locator": ca.key.locator},
        "key_algorithm": str(ca.key_algorithm),
    }
    if ca.status is not None:
        entry["status"] = str(ca.status)
    if ca.created_at is not None:
        entry["created_at"] = ca.created_at.isoformat()
    return entry


def _cert_file(ca: CaCertificate) -> str:
    return f"{ca.role}-{ca.ca_id}.pem"


def write_state(ca_dir: Path, state: CaState, *, now: datetime) -> None:
    manifest = {
        "format": _FORMAT,
        "fleet_name": state.fleet_name,
        "key_backend": state.key_backend,
        "root": _entry_json(state.root, _cert_file(state.root)),
        "issuing": [_entry_json(ca, _cert_file(ca)) for ca in state.issuing],
        "active_issuing": state.active_id,
    }
    for ca in (state.root, *state.issuing):
        path = ca_dir / _cert_file(ca)
        if not path.exists():
            write_atomic(path, ca.pem)
    write_atomic(ca_dir / BUNDLE, bundle(state, now))
    # The manifest goes last: until it is replaced, readers see the previous state whole.
    write_atomic(ca_dir / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n", mode=0o600)


def bundle(state: CaState, now: datetime) -> bytes:
    live = [ca for ca in state.issuing if ca.not_after > now]
    return b"".join(ca.pem for ca in (state.root, *live))


def _read_entry(ca_dir: Path, raw: Any, role: CaRole) -> CaCertificate:
    try:
        ca_id = str(raw["ca_id"])
        if not re.fullmatch(r"[0-9a-f]{16}", ca_id):
            raise ValueError(f"bad CA id {ca_id!r}")
        cert_name = str(raw["certificate"])
        if "/" in cert_name or cert_name.startswith("."):
            raise ValueError(f"bad certificate file name {cert_name!r}")
        key = KeyReference(backend=str(raw["key"]["backend"]), locator=str(raw["key"]["locator"]))
        algorithm = KeyAlgorithm(raw["key_algorithm"])
        status = IssuingCaStatus(raw["status"]) if role is CaRole.ISSUING else None
        created = raw.get("created_at")
        created_at = datetime.fromisoformat(created) if created else None
        cert = x509.load_pem_x509_certificate((ca_dir / cert_name).read_bytes())
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise CaStateCorruptError(
            f"CA manifest entry for the {role} CA is unusable: {exc}"
        ) from exc
    return CaCertificate(ca_id, role, cert, key, algorithm, status, created_at)


def read_state(ca_dir: Path) -> CaState:
    try:
        text = (ca_dir / MANIFEST).read_bytes()
    except FileNotFoundError as exc:
        raise CaNotFoundError(f"no fleet CA in {ca_dir} (run `fleetguard ca init`)") from exc
    try:
        raw = json.loads(text)
        if raw.get("format") != _FORMAT:
            raise ValueError(f"unknown manifest format {raw.get('format')!r}")
        fleet_name, key_backend = str(raw["fleet_name"]), str(raw["key_backend"])
        root_raw, issuing_raw, active_id = raw["root"], raw["issuing"], str(raw["active_issuing"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CaStateCorruptError(f"CA manifest {ca_dir / MANIFEST} is unreadable: {exc}") from exc
    root = _read_entry(ca_dir, root_raw, CaRole.ROOT)
    issuing = tuple(_read_entry(ca_dir, item, CaRole.ISSUING) for item in issuing_raw)
    try:
        root.certificate.verify_directly_issued_by(root.certificate)
        for ca in issuing:
            ca.certificate.verify_directly_issued_by(root.certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CaStateCorruptError(f"CA certificates in {ca_dir} do not chain to the root") from exc
    actives = [ca for ca in issuing if ca.status is IssuingCaStatus.ACTIVE]
    if [ca.ca_id for ca in actives] != [active_id]:
        raise CaStateCorruptError(f"CA manifest in {ca_dir} does not name one active issuing CA")
    return CaState(fleet_name, key_backend, root, issuing, active_id)
