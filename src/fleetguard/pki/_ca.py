"""The fleet CA: a root, one active issuing CA and the retired ones, kept in a directory.

:class:`FleetCA` holds the opened state and the opened issuing keys; what it does is
spelled out beside: the directory's state in ``_state``, making CAs in ``_hierarchy``,
leaf profiles and the one issuance path in ``_issuance``, CRLs in ``_crl``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from fleetguard.core.clock import utcnow
from fleetguard.core.files import directory_lock
from fleetguard.pki import _crl, _x509
from fleetguard.pki._backends import CaSigningKey, KeyBackend
from fleetguard.pki._csr import check_public_key, load_csr, verified_public_key
from fleetguard.pki._hierarchy import (
    DEFAULT_ISSUING_VALIDITY,
    DEFAULT_ROOT_VALIDITY,
    checked_signer,
    create_hierarchy,
    rotate_hierarchy,
)
from fleetguard.pki._issuance import (
    DEFAULT_DEVICE_VALIDITY,
    DEFAULT_SERVER_VALIDITY,
    DEFAULT_SERVICE_VALIDITY,
    Issuer,
    LeafProfile,
    claim_profile,
    device_profile,
    issue_leaf,
    server_profile,
    service_profile,
)
from fleetguard.pki._state import BUNDLE, CRL_DIR, CaState, bundle, read_state
from fleetguard.pki.errors import KeyBackendConfigError
from fleetguard.pki.models import (
    CaCertificate,
    IssuedCertificate,
    KeyAlgorithm,
    PublishedCrls,
    Revocation,
    SignedCrl,
)

log = logging.getLogger(__name__)


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
    now = now or utcnow()
    ca_dir = Path(ca_dir)
    state = create_hierarchy(
        ca_dir, backend, fleet_name=fleet_name, key_algorithm=KeyAlgorithm(key_algorithm),
        root_validity=root_validity, issuing_validity=issuing_validity, now=now,
    )
    log.info(
        "fleet CA created in %s: root %s, issuing CA %s (%s, keys in %s)",
        ca_dir,
        state.root.fingerprint_sha256,
        state.active_id,
        state.active.key_algorithm,
        backend.kind,
    )
    ca = FleetCA(ca_dir, backend, state)
    ca.publish_crls([], now=now)  # nothing is revoked yet; peers get CRLs from the start
    return ca


def open_fleet_ca(ca_dir: Path, backend: KeyBackend) -> FleetCA:
    """Open an existing fleet CA. Keys are opened when first needed, not here."""
    ca_dir = Path(ca_dir)
    state = read_state(ca_dir)
    if state.key_backend != backend.kind:
        raise KeyBackendConfigError(
            f"the fleet CA in {ca_dir} keeps its keys in a {state.key_backend!r} backend, "
            f"not {backend.kind!r}"
        )
    return FleetCA(ca_dir, backend, state)


class FleetCA:
    """An opened fleet CA. Issuance is thread-safe; keep one per process and reuse it."""

    def __init__(self, ca_dir: Path, backend: KeyBackend, state: CaState) -> None:
        self._dir = ca_dir
        self._backend = backend
        self._state = state
        self._issuers: dict[str, Issuer] = {}
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
        return self._state.active

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
        return bundle(self._state, now or utcnow())

    def reload(self) -> None:
        """Re-read the manifest, e.g. after ``fleetguard ca rotate`` ran in another process."""
        self._adopt(read_state(self._dir))

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
        profile = device_profile(device_id)
        request = csr if isinstance(csr, x509.CertificateSigningRequest) else load_csr(csr)
        return self._issue(verified_public_key(request), profile, validity, now)

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
        return self._issue(check_public_key(public_key), claim_profile(batch_id), validity, now)

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
        profile = server_profile(dns_names, ip_addresses, common_name)
        return self._issue(check_public_key(public_key), profile, validity, now)

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
        profile = service_profile(name)
        return self._issue(check_public_key(public_key), profile, validity, now)

    def _issue(
        self,
        public: CertificatePublicKeyTypes,
        profile: LeafProfile,
        validity: timedelta,
        now: datetime | None,
    ) -> IssuedCertificate:
        issuer = self._issuer(self._state.active_id)
        return issue_leaf(issuer, public, profile, validity=validity, now=now)

    def _issuer(self, ca_id: str) -> Issuer:
        issuer = self._issuers.get(ca_id)
        if issuer is not None:
            return issuer
        with self._lock:
            issuer = self._issuers.get(ca_id)
            if issuer is None:
                ca = self._state.issuing_ca(ca_id)
                signer = self._checked_signer(ca)
                issuer = Issuer(ca, signer, _x509.authority_key_id(ca.certificate))
                self._issuers[ca_id] = issuer
            return issuer

    def _checked_signer(self, ca: CaCertificate) -> CaSigningKey:
        return checked_signer(self._backend, self._dir, ca)

    def _adopt(self, state: CaState) -> None:
        """Take a newer state; opened keys stay open, with each CA's status as it is now."""
        with self._lock:
            self._state = state
            self._issuers = {
                ca_id: replace(issuer, ca=state.issuing_ca(ca_id))
                for ca_id, issuer in self._issuers.items()
                if any(ca.ca_id == ca_id for ca in state.issuing)
            }

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
        state = rotate_hierarchy(
            self._dir, self._backend, key_algorithm=key_algorithm, validity=validity,
            now=now or utcnow(),
        )
        self._adopt(state)
        log.info("issuing CA rotated in %s: %s is now active", self._dir, state.active_id)
        return state.active

    # -- revocation ----------------------------------------------------------------------

    def build_crls(
        self,
        revocations: Iterable[Revocation],
        *,
        lifetime: timedelta = _crl.DEFAULT_CRL_LIFETIME,
        include_root: bool = True,
        now: datetime | None = None,
    ) -> list[SignedCrl]:
        """One CRL per unexpired issuing CA (and one for the root), with a new CRL number.

        A revocation with ``issuer_key_id`` goes on that CA's CRL only; one without it on
        every issuing CA's CRL. The root's CRL lists revoked issuing CAs (usually none);
        ``openssl verify -crl_check_all`` needs it.
        """
        with directory_lock(self._dir):
            return self._build_crls(revocations, lifetime, include_root, now or utcnow())

    def publish_crls(
        self,
        revocations: Iterable[Revocation],
        *,
        directory: Path | None = None,
        lifetime: timedelta = _crl.DEFAULT_CRL_LIFETIME,
        now: datetime | None = None,
    ) -> PublishedCrls:
        """Build the CRLs and write them atomically: ``<ca_id>.crl.pem``/``.crl.der`` each,
        and all PEMs in ``crls.pem``. Default directory: ``<ca_dir>/crl``."""
        out = Path(directory) if directory is not None else self.crl_directory
        with directory_lock(self._dir):
            crls = self._build_crls(revocations, lifetime, True, now or utcnow())
            return _crl.write_crls(out, crls)

    def _build_crls(
        self,
        revocations: Iterable[Revocation],
        lifetime: timedelta,
        include_root: bool,
        now: datetime,
    ) -> list[SignedCrl]:
        _crl.check_lifetime(lifetime)
        number = _crl.next_crl_number(self._dir)
        signers: list[tuple[CaCertificate, CaSigningKey]] = []
        if include_root:
            signers.append((self._state.root, self._checked_signer(self._state.root)))
        signers += [
            (ca, self._issuer(ca.ca_id).signer)
            for ca in self._state.issuing
            if ca.not_after > now
        ]
        return _crl.sign_crls(signers, revocations, number=number, now=now, lifetime=lifetime)

