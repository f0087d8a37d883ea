"""The fleet's CAs themselves: making the root and issuing CAs, opening their keys."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from fleetguard.core.files import directory_lock
from fleetguard.pki import _x509
from fleetguard.pki._backends import CaSigningKey, KeyBackend
from fleetguard.pki._issuance import check_validity
from fleetguard.pki._state import MANIFEST, CaState, read_state, write_state
from fleetguard.pki.errors import (
    CaAlreadyExistsError,
    CaStateCorruptError,
    InvalidCertificateParametersError,
)
from fleetguard.pki.models import (
    CaCertificate,
    CaRole,
    IssuingCaStatus,
    KeyAlgorithm,
    KeyReference,
)

DEFAULT_ROOT_VALIDITY = timedelta(days=3650)
DEFAULT_ISSUING_VALIDITY = timedelta(days=730)

_FLEET_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}\Z")


def checked_signer(backend: KeyBackend, ca_dir: Path, ca: CaCertificate) -> CaSigningKey:
    """Open a CA's key, and refuse it unless it is the key its certificate names."""
    signer = backend.signer(ca_dir, ca.key)
    if not _x509.keys_match(signer, ca.certificate.public_key()):
        raise CaStateCorruptError(
            f"the key of {ca.role} CA {ca.ca_id} does not match its certificate"
        )
    return signer


def create_hierarchy(
    ca_dir: Path,
    backend: KeyBackend,
    *,
    fleet_name: str,
    key_algorithm: KeyAlgorithm,
    root_validity: timedelta,
    issuing_validity: timedelta,
    now: datetime,
) -> CaState:
    """A root CA and its first issuing CA in ``ca_dir``; refuses if a CA exists there."""
    if not _FLEET_NAME_RE.match(fleet_name):
        raise InvalidCertificateParametersError(
            "fleet name: 1-40 letters, digits, spaces, dots, dashes or underscores"
        )
    check_validity(root_validity, None, "root CA")
    check_validity(issuing_validity, root_validity, "issuing CA")
    with directory_lock(ca_dir):
        if (ca_dir / MANIFEST).exists():
            raise CaAlreadyExistsError(f"a fleet CA already exists in {ca_dir}")
        with _new_keys(ca_dir, backend) as made:
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
                ca_dir, backend, root, root_signer, fleet_name, key_algorithm,
                issuing_validity, now, made,
            )
            state = CaState(fleet_name, backend.kind, root, (first,), first.ca_id)
            write_state(ca_dir, state, now=now)
    return state


def rotate_hierarchy(
    ca_dir: Path,
    backend: KeyBackend,
    *,
    key_algorithm: KeyAlgorithm | None,
    validity: timedelta,
    now: datetime,
) -> CaState:
    """A new active issuing CA signed by the root; every earlier one becomes retired."""
    check_validity(validity, None, "issuing CA")
    with directory_lock(ca_dir):
        state = read_state(ca_dir)
        algorithm = KeyAlgorithm(key_algorithm or state.active.key_algorithm)
        with _new_keys(ca_dir, backend) as made:
            root_signer = checked_signer(backend, ca_dir, state.root)
            new = _make_issuing(
                ca_dir, backend, state.root, root_signer, state.fleet_name, algorithm,
                validity, now, made,
            )
            retired = tuple(replace(ca, status=IssuingCaStatus.RETIRED) for ca in state.issuing)
            state = replace(state, issuing=(*retired, new), active_id=new.ca_id)
            write_state(ca_dir, state, now=now)
    return state


@contextmanager
def _new_keys(ca_dir: Path, backend: KeyBackend) -> Iterator[list[KeyReference]]:
    """Collects the keys made inside; discards them all if the block fails."""
    made: list[KeyReference] = []
    try:
        yield made
    except BaseException:
        for ref in made:
            backend.discard(ca_dir, ref)
        raise


def _new_ca_id() -> str:
    return os.urandom(8).hex()


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
