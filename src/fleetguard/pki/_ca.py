"""The fleet CA: a root, one active issuing CA and the retired ones, kept in a directory.

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

import ipaddress
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from fleetguard.core.clock import utcnow
from fleetguard.core.files import directory_lock, ensure_private_dir, write_atomic
from fleetguard.pki import _x509
from fleetguard.pki._backends import CaSigningKey, KeyBackend
from fleetguard.pki._csr import check_public_key, load_csr, verified_public_key
from fleetguard.pki.errors import (
    CaAlreadyExistsError,
    CaExpiredError,
    CaNotFoundError,
    CaStateCorruptError,
    InvalidCertificateParametersError,
    KeyBackendConfigError,
)
from fleetguard.pki.models import (
    CaCertificate,
    CaRole,
    IssuedCertificate,
    IssuingCaStatus,
    KeyAlgorithm,
    KeyReference,
    PublishedCrls,
    Revocation,
    SignedCrl,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BUNDLE = "bundle.pem"
CRL_DIR = "crl"
CRL_NUMBER = "crl-number"
COMBINED_CRL = "crls.pem"
_FORMAT = 1

DEFAULT_ROOT_VALIDITY = timedelta(days=3650)
DEFAULT_ISSUING_VALIDITY = timedelta(days=730)
DEFAULT_DEVICE_VALIDITY = timedelta(days=30)
DEFAULT_SERVER_VALIDITY = timedelta(days=90)
DEFAULT_SERVICE_VALIDITY = timedelta(days=90)
DEFAULT_CRL_LIFETIME = timedelta(days=2)
MAX_LEAF_VALIDITY = timedelta(days=398)

_FLEET_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}\Z")
# Lowercase and starting with a letter; UUIDs are refused too: a service can't pose as a device.
_SERVICE_NAME_RE = re.compile(r"\A[a-z][a-z0-9._-]{0,62}\Z")
_DNS_RE = re.compile(
    r"\A(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z"
)


def _new_ca_id() -> str:
    return os.urandom(8).hex()


def _check_validity(validity: timedelta, limit: timedelta | None, what: str) -> None:
    if validity <= timedelta(0):
        raise InvalidCertificateParametersError(f"{what} validity must be positive")
    if limit is not None and validity > limit:
        raise InvalidCertificateParametersError(
            f"{what} validity {validity.days} days exceeds the limit of {limit.days} days"
        )


# -- manifest ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _State:
    fleet_name: str
    key_backend: str
    root: CaCertificate
    issuing: tuple[CaCertificate, ...]
    active_id: str


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


def _write_state(ca_dir: Path, state: _State, *, now: datetime) -> None:
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
    write_atomic(ca_dir / BUNDLE, _bundle(state, now))
    # The manifest goes last: until it is replaced, readers see the previous state whole.
    write_atomic(ca_dir / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n", mode=0o600)


def _bundle(state: _State, now: datetime) -> bytes:
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


def _read_state(ca_dir: Path) -> _State:
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
    return _State(fleet_name, key_backend, root, issuing, active_id)


# -- the CA -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Issuer:
    ca: CaCertificate
    signer: CaSigningKey
    aki: x509.AuthorityKeyIdentifier


def init_fleet_ca(
    ca_dir: Path,
    backend: KeyBackend,
    *,
    fleet_name: str = "fleetguard",
    key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    root_validity: timedelta = DEFAULT_ROOT_VALIDITY,
    issuing_validity: timedelta = DEFAULT_ISSUING_VALIDITY,
    now: datetime | None = None,
) -> FleetCA:
    """Create the root CA and the first issuing CA in ``ca_dir``; refuse if one exists.

    Also publishes empty CRLs into ``<ca_dir>/crl`` so that CRL-checking peers work
    from the start.
    """
    if not _FLEET_NAME_RE.match(fleet_name):
        raise InvalidCertificateParametersError(
            "fleet name: 1-40 letters, digits, spaces, dots, dashes or underscores"
        )
    key_algorithm = KeyAlgorithm(key_algorithm)
    _check_validity(root_validity, None, "root CA")
    _check_validity(issuing_validity, root_validity, "issuing CA")
    now = now or utcnow()
    ca_dir = Path(ca_dir)
    with directory_lock(ca_dir):
        if (ca_dir / MANIFEST).exists():
            raise CaAlreadyExistsError(f"a fleet CA already exists in {ca_dir}")
        made: list[KeyReference] = []
        try:
            root_id = _new_ca_id()
            root_ref = backend.generate(ca_dir, root_id, key_algorithm)
            made.append(root_ref)
            root_signer = backend.signer(ca_dir, root_ref)
            root_cert = _x509.build_root_certificate(
                root_signer,
                _x509.ca_name(fleet_name, f"{fleet_name} Root CA"),
                now=now,
                validity=root_validity,
            )
            root = CaCertificate(
                root_id, CaRole.ROOT, root_cert, root_ref, key_algorithm, None, now
            )
            first = _make_issuing(
                ca_dir,
                backend,
                root,
                root_signer,
                fleet_name,
                key_algorithm,
                issuing_validity,
                now,
                made,
            )
            state = _State(fleet_name, backend.kind, root, (first,), first.ca_id)
            _write_state(ca_dir, state, now=now)
        except BaseException:
            for ref in made:
                backend.discard(ca_dir, ref)
            raise
    log.info(
        "fleet CA created in %s: root %s, issuing CA %s (%s, keys in %s)",
        ca_dir,
        root.fingerprint_sha256,
        first.ca_id,
        key_algorithm,
        backend.kind,
    )
    ca = FleetCA(ca_dir, backend, state)
    ca.publish_crls([], now=now)  # nothing is revoked yet; peers get CRLs from the start
    return ca


def _make_issuing(
    ca_dir: Path,
    backend: KeyBackend,
    root: CaCertificate,
    root_signer: CaSigningKey,
    fleet_name: str,
    algorithm: KeyAlgorithm,
    validity: timedelta,
    now: datetime,
    made: list[KeyReference],
) -> CaCertificate:
    ca_id = _new_ca_id()
    ref = backend.generate(ca_dir, ca_id, algorithm)
    made.append(ref)
    name = _x509.ca_name(fleet_name, f"{fleet_name} Issuing CA {now:%Y-%m-%d} {ca_id[:8]}")
    cert = _x509.build_issuing_certificate(
        root_signer,
        root.certificate,
        backend.public_key(ca_dir, ref),
        name,
        now=now,
        validity=validity,
    )
    return CaCertificate(ca_id, CaRole.ISSUING, cert, ref, algorithm, IssuingCaStatus.ACTIVE, now)


def open_fleet_ca(ca_dir: Path, backend: KeyBackend) -> FleetCA:
    """Open an existing fleet CA. Keys are opened when first needed, not here."""
    ca_dir = Path(ca_dir)
    state = _read_state(ca_dir)
    if state.key_backend != backend.kind:
        raise KeyBackendConfigError(
            f"the fleet CA in {ca_dir} keeps its keys in a {state.key_backend!r} backend, "
            f"not {backend.kind!r}"
        )
    return FleetCA(ca_dir, backend, state)


class FleetCA:
    """An opened fleet CA. Issuance is thread-safe; keep one per process and reuse it."""

    def __init__(self, ca_dir: Path, backend: KeyBackend, state: _State) -> None:
        self._dir = ca_dir
        self._backend = backend
        self._state = state
        self._issuers: dict[str, _Issuer] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FleetCA({str(self._dir)!r}, active={self._state.active_id}, {self._backend!r})"

    def __enter__(self) -> FleetCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._issuers.clear()
        self._backend.close()

    # -- what the CA is ------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def fleet_name(self) -> str:
        return self._state.fleet_name

    @property
    def root(self) -> CaCertificate:
        return self._state.root

    @property
    def issuing_cas(self) -> tuple[CaCertificate, ...]:
        """All issuing CAs, oldest first: the active one and the retired ones."""
        return self._state.issuing

    @property
    def active_issuing_ca(self) -> CaCertificate:
        return next(ca for ca in self._state.issuing if ca.ca_id == self._state.active_id)

    @property
    def root_fingerprint(self) -> str:
        """SHA-256 of the root certificate (hex): what an enrollment token pins."""
        return self._state.root.fingerprint_sha256

    @property
    def root_spki_sha256(self) -> str:
        """SHA-256 of the root's public key info (hex): a pin that survives re-signing."""
        return _x509.spki_sha256(self._state.root.certificate.public_key())

    @property
    def bundle_path(self) -> Path:
        return self._dir / BUNDLE

    @property
    def crl_directory(self) -> Path:
        """Where :meth:`publish_crls` writes by default; ``crls.pem`` in it has them all."""
        return self._dir / CRL_DIR

    def bundle_pem(self, *, now: datetime | None = None) -> bytes:
        """Root first, then every issuing CA that has not expired: the CA file for peers."""
        return _bundle(self._state, now or utcnow())

    def reload(self) -> None:
        """Re-read the manifest, e.g. after ``fleetguard ca rotate`` ran in another process."""
        state = _read_state(self._dir)
        with self._lock:
            self._state = state
            known = {ca.ca_id for ca in state.issuing}
            self._issuers = {k: v for k, v in self._issuers.items() if k in known}

    # -- issuance ------------------------------------------------------------------------

    def issue_device_certificate(
        self,
        csr: bytes | str | x509.CertificateSigningRequest,
        device_id: uuid.UUID,
        *,
        validity: timedelta = DEFAULT_DEVICE_VALIDITY,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Sign a device certificate for the key in ``csr`` and nothing else from it.

        The subject is ``CN=<device_id>``, the only SAN is ``urn:fleetguard:device:<id>``,
        keyUsage digitalSignature, extendedKeyUsage clientAuth, CA:false. The validity
        ends at the issuing CA's own expiry at the latest.
        """
        if not isinstance(device_id, uuid.UUID):
            raise InvalidCertificateParametersError("device_id must be a UUID")
        _check_validity(validity, MAX_LEAF_VALIDITY, "device certificate")
        request = csr if isinstance(csr, x509.CertificateSigningRequest) else load_csr(csr)
        public = verified_public_key(request)
        issuer = self._active_issuer()
        not_before, not_after = self._window(issuer, validity, now)
        cert = _x509.build_device_certificate(
            issuer.signer,
            issuer.ca.certificate,
            issuer.aki,
            public,
            device_id,
            not_before=not_before,
            not_after=not_after,
        )
        return self._issued(cert, issuer, public, device_id)

    def issue_claim_certificate(
        self,
        public_key: CertificatePublicKeyTypes,
        batch_id: uuid.UUID,
        *,
        validity: timedelta = DEFAULT_DEVICE_VALIDITY,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """A batch claim certificate: ``CN=<batch id>``, SAN ``urn:fleetguard:claim:<id>``.

        It chains to the fleet CA like a device certificate, so the device endpoint's TLS
        accepts it, but its URI marks it as good for enrollment only.
        """
        _check_validity(validity, MAX_LEAF_VALIDITY, "claim certificate")
        public = check_public_key(public_key)
        issuer = self._active_issuer()
        not_before, not_after = self._window(issuer, validity, now)
        cert = _x509.build_device_certificate(
            issuer.signer,
            issuer.ca.certificate,
            issuer.aki,
            public,
            batch_id,
            not_before=not_before,
            not_after=not_after,
            uri=_x509.claim_uri(batch_id),
        )
        return self._issued(cert, issuer, public, None)

    def issue_server_certificate(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        common_name: str | None = None,
        validity: timedelta = DEFAULT_SERVER_VALIDITY,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """A TLS server certificate for the platform itself (serverAuth, the given SANs)."""
        _check_validity(validity, MAX_LEAF_VALIDITY, "server certificate")
        public = check_public_key(public_key)
        names = [_dns_name(d) for d in dns_names]
        try:
            ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
        except ValueError as exc:
            raise InvalidCertificateParametersError(str(exc)) from exc
        if not names and not ips:
            raise InvalidCertificateParametersError("a server certificate needs a DNS name or IP")
        cn = common_name or (names[0] if names else str(ips[0]))
        if not 0 < len(cn) <= 64:
            raise InvalidCertificateParametersError("common name must be 1-64 characters")
        issuer = self._active_issuer()
        not_before, not_after = self._window(issuer, validity, now)
        cert = _x509.build_server_certificate(
            issuer.signer,
            issuer.ca.certificate,
            public,
            common_name=cn,
            dns_names=names,
            ip_addresses=ips,
            not_before=not_before,
            not_after=not_after,
        )
        return self._issued(cert, issuer, public, None)

    def issue_service_certificate(
        self,
        public_key: CertificatePublicKeyTypes,
        name: str,
        *,
        validity: timedelta = DEFAULT_SERVICE_VALIDITY,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """A client certificate for one of the platform's own services.

        ``CN=<name>``, the only SAN is ``urn:fleetguard:service:<name>``, clientAuth,
        CA:false. ``name`` is 1-63 lowercase letters, digits, dots, dashes or underscores
        and starts with a letter, so it can never equal a device's UUID common name.
        """
        if not isinstance(name, str) or not _SERVICE_NAME_RE.match(name) or _is_uuid(name):
            raise InvalidCertificateParametersError(
                "service name: 1-63 lowercase letters, digits, '.', '-' or '_', "
                "starting with a letter"
            )
        _check_validity(validity, MAX_LEAF_VALIDITY, "service certificate")
        public = check_public_key(public_key)
        issuer = self._active_issuer()
        not_before, not_after = self._window(issuer, validity, now)
        cert = _x509.build_client_certificate(
            issuer.signer,
            issuer.ca.certificate,
            issuer.aki,
            public,
            name,
            _x509.service_uri(name),
            not_before=not_before,
            not_after=not_after,
        )
        return self._issued(cert, issuer, public, None)

    def _window(
        self, issuer: _Issuer, validity: timedelta, now: datetime | None
    ) -> tuple[datetime, datetime]:
        now = now or utcnow()
        end = issuer.ca.not_after
        if end <= now + timedelta(hours=1):
            raise CaExpiredError(
                f"issuing CA {issuer.ca.ca_id} expires at {end:%Y-%m-%d %H:%M} UTC; "
                "rotate it (`fleetguard ca rotate`)"
            )
        return now - _x509.BACKDATE, min(now + validity, end)

    def _issued(
        self,
        cert: x509.Certificate,
        issuer: _Issuer,
        public: CertificatePublicKeyTypes,
        device_id: uuid.UUID | None,
    ) -> IssuedCertificate:
        pem = cert.public_bytes(Encoding.PEM)
        return IssuedCertificate(
            certificate=cert,
            serial_number=cert.serial_number,
            fingerprint_sha256=_x509.certificate_sha256(cert),
            spki_sha256=_x509.spki_sha256(public),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            issuer_ca_id=issuer.ca.ca_id,
            issuer_key_id=issuer.ca.key_id,
            certificate_pem=pem,
            chain_pem=pem + issuer.ca.pem,
            device_id=device_id,
        )

    def _active_issuer(self) -> _Issuer:
        return self._issuer(self._state.active_id)

    def _issuer(self, ca_id: str) -> _Issuer:
        issuer = self._issuers.get(ca_id)
        if issuer is not None:
            return issuer
        with self._lock:
            issuer = self._issuers.get(ca_id)
            if issuer is None:
                ca = next(c for c in self._state.issuing if c.ca_id == ca_id)
                signer = self._checked_signer(ca)
                issuer = _Issuer(ca, signer, _x509.authority_key_id(ca.certificate))
                self._issuers[ca_id] = issuer
            return issuer

    def _checked_signer(self, ca: CaCertificate) -> CaSigningKey:
        signer = self._backend.signer(self._dir, ca.key)
        if not _x509.keys_match(signer, ca.certificate.public_key()):
            raise CaStateCorruptError(
                f"the key of {ca.role} CA {ca.ca_id} does not match its certificate"
            )
        return signer

    # -- rotation ------------------------------------------------------------------------

    def rotate_issuing_ca(
        self,
        *,
        key_algorithm: KeyAlgorithm | None = None,
        validity: timedelta = DEFAULT_ISSUING_VALIDITY,
        now: datetime | None = None,
    ) -> CaCertificate:
        """Make a new active issuing CA; the previous one is retired, not removed.

        Certificates of a retired CA stay valid until they expire: it stays in the
        bundle and keeps signing its CRL until its own certificate expires. Publish the
        CRLs (with the current revocations) right after: until then the new CA has no
        CRL, and CRL-checking peers refuse the certificates it issues.
        """
        _check_validity(validity, None, "issuing CA")
        now = now or utcnow()
        with directory_lock(self._dir):
            state = _read_state(self._dir)
            current = next(ca for ca in state.issuing if ca.ca_id == state.active_id)
            algorithm = KeyAlgorithm(key_algorithm or current.key_algorithm)
            made: list[KeyReference] = []
            try:
                root_signer = self._checked_signer(state.root)
                new = _make_issuing(
                    self._dir,
                    self._backend,
                    state.root,
                    root_signer,
                    state.fleet_name,
                    algorithm,
                    validity,
                    now,
                    made,
                )
                retired = tuple(replace(ca, status=IssuingCaStatus.RETIRED) for ca in state.issuing)
                state = replace(state, issuing=(*retired, new), active_id=new.ca_id)
                _write_state(self._dir, state, now=now)
            except BaseException:
                for ref in made:
                    self._backend.discard(self._dir, ref)
                raise
        with self._lock:
            self._state = state
            self._issuers = {
                k: replace(v, ca=replace(v.ca, status=IssuingCaStatus.RETIRED))
                for k, v in self._issuers.items()
            }
        log.info("issuing CA rotated in %s: %s is now active", self._dir, new.ca_id)
        return new

    # -- revocation ----------------------------------------------------------------------

    def build_crls(
        self,
        revocations: Iterable[Revocation],
        *,
        lifetime: timedelta = DEFAULT_CRL_LIFETIME,
        include_root: bool = True,
        now: datetime | None = None,
    ) -> list[SignedCrl]:
        """One CRL per unexpired issuing CA (and one for the root), with a new CRL number.

        A revocation with ``issuer_key_id`` goes on that CA's CRL only; one without it on
        every issuing CA's CRL. The root's CRL lists revoked issuing CAs (usually none);
        ``openssl verify -crl_check_all`` needs it.
        """
        with directory_lock(self._dir):
            return self._build_crls(list(revocations), lifetime, include_root, now or utcnow())

    def publish_crls(
        self,
        revocations: Iterable[Revocation],
        *,
        directory: Path | None = None,
        lifetime: timedelta = DEFAULT_CRL_LIFETIME,
        now: datetime | None = None,
    ) -> PublishedCrls:
        """Build the CRLs and write them atomically: ``<ca_id>.crl.pem``/``.crl.der`` each,
        and all PEMs in ``crls.pem``. Default directory: ``<ca_dir>/crl``."""
        out = Path(directory) if directory is not None else self.crl_directory
        with directory_lock(self._dir):
            crls = self._build_crls(list(revocations), lifetime, True, now or utcnow())
            out.mkdir(parents=True, exist_ok=True)
            files: list[Path] = []
            for crl in crls:
                for suffix, data in ((".crl.pem", crl.pem), (".crl.der", crl.der)):
                    path = out / f"{crl.issuer_ca_id}{suffix}"
                    write_atomic(path, data)
                    files.append(path)
            combined = out / COMBINED_CRL
            write_atomic(combined, b"".join(crl.pem for crl in crls))
        return PublishedCrls(directory=out, crls=crls, combined_pem=combined, files=files)

    def _build_crls(
        self,
        revocations: list[Revocation],
        lifetime: timedelta,
        include_root: bool,
        now: datetime,
    ) -> list[SignedCrl]:
        if lifetime <= timedelta(0):
            raise InvalidCertificateParametersError("CRL lifetime must be positive")
        number = self._next_crl_number()
        unique: dict[tuple[int, str | None], Revocation] = {}
        for entry in revocations:
            unique.setdefault((entry.serial_number, entry.issuer_key_id), entry)
        entries = list(unique.values())
        crls: list[SignedCrl] = []
        if include_root:
            root = self._state.root
            mine = [e for e in entries if e.issuer_key_id == root.key_id]
            signer = self._checked_signer(root)
            crls.append(self._sign_crl(root, signer, mine, number, now, lifetime))
        for ca in self._state.issuing:
            if ca.not_after <= now:
                continue
            mine = [e for e in entries if e.issuer_key_id in (None, ca.key_id)]
            signer = self._issuer(ca.ca_id).signer
            crls.append(self._sign_crl(ca, signer, mine, number, now, lifetime))
        return crls

    @staticmethod
    def _sign_crl(
        ca: CaCertificate,
        signer: CaSigningKey,
        entries: list[Revocation],
        number: int,
        now: datetime,
        lifetime: timedelta,
    ) -> SignedCrl:
        crl = _x509.build_crl(
            signer,
            ca.certificate,
            entries,
            crl_number=number,
            this_update=now,
            next_update=now + lifetime,
        )
        return SignedCrl(ca.ca_id, ca.key_id, crl, number)

    def _next_crl_number(self) -> int:
        """Monotonic across runs and processes (the caller holds the directory lock)."""
        path = self._dir / CRL_NUMBER
        try:
            last = int(path.read_text().strip() or "0")
        except FileNotFoundError:
            last = 0
        except ValueError as exc:
            raise CaStateCorruptError(f"{path} does not hold a number") from exc
        ensure_private_dir(self._dir)
        write_atomic(path, f"{last + 1}\n".encode())
        return last + 1


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _dns_name(name: str) -> str:
    value = name.strip().lower().rstrip(".")
    if not _DNS_RE.match(value):
        raise InvalidCertificateParametersError(f"not a DNS host name: {name!r}")
    return value
