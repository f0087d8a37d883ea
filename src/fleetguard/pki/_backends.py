"""Where CA private keys live: the ``KeyBackend`` contract and the encrypted-file backend.

A backend hands out *signers*: objects that are ``cryptography`` private keys as far as
``CertificateBuilder.sign`` and ``CertificateRevocationListBuilder.sign`` are concerned
(``cryptography`` calls the key's ``sign`` method; it accepts implementations of its
key interfaces). The file backend returns real in-memory keys; the PKCS#11 backend
returns handles whose ``sign`` runs inside the token.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fleetguard.core.files import ensure_private_dir, write_atomic, write_new_private
from fleetguard.keys import MasterKey, open_secret, rewrap_secret, seal_secret
from fleetguard.pki.errors import CaStateCorruptError, KeyBackendConfigError
from fleetguard.pki.models import KeyAlgorithm, KeyReference

CaSigningKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CaPublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

KEY_DIR = "keys"


class KeyBackend(abc.ABC):
    """Creates and opens CA private keys; never exports one."""

    #: recorded in the CA manifest; a CA opens only with a backend of the same kind
    kind: str

    @abc.abstractmethod
    def generate(self, ca_dir: Path, ca_id: str, algorithm: KeyAlgorithm) -> KeyReference:
        """Make a new key for CA ``ca_id`` and say where it lives."""

    @abc.abstractmethod
    def public_key(self, ca_dir: Path, ref: KeyReference) -> CaPublicKey:
        """The public half of a key made by :meth:`generate`."""

    @abc.abstractmethod
    def signer(self, ca_dir: Path, ref: KeyReference) -> CaSigningKey:
        """A signer usable by ``cryptography``'s certificate and CRL builders."""

    @abc.abstractmethod
    def discard(self, ca_dir: Path, ref: KeyReference) -> None:
        """Delete a key made by :meth:`generate` (rolls back a CA setup that failed)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions or other resources; the backend may be used again after."""


def sealed_key_aad(ca_id: str) -> bytes:
    return b"fleetguard-ca-key|" + ca_id.encode("ascii")


def generate_software_key(algorithm: KeyAlgorithm) -> CaSigningKey:
    if algorithm is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is KeyAlgorithm.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is KeyAlgorithm.RSA_3072:
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise KeyBackendConfigError(f"unknown key algorithm {algorithm!r}")


class EncryptedFileKeyBackend(KeyBackend):
    """CA keys as PKCS#8 DER sealed with AES-256-GCM under the master key, mode 0600.

    The associated data binds each sealed key to its CA id, so a key file copied over
    another CA's does not open.
    """

    kind = "file"

    def __init__(self, master_key: MasterKey) -> None:
        self._master_key = master_key

    def __repr__(self) -> str:
        return f"EncryptedFileKeyBackend(master_key_id={self._master_key.key_id.hex()})"

    def generate(self, ca_dir: Path, ca_id: str, algorithm: KeyAlgorithm) -> KeyReference:
        key = generate_software_key(algorithm)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        locator = f"{KEY_DIR}/{ca_id}.key.sealed"
        ensure_private_dir(ca_dir / KEY_DIR)
        sealed = seal_secret(self._master_key, der, sealed_key_aad(ca_id))
        write_new_private(ca_dir / locator, sealed)
        return KeyReference(backend=self.kind, locator=locator)

    def public_key(self, ca_dir: Path, ref: KeyReference) -> CaPublicKey:
        return self.signer(ca_dir, ref).public_key()

    def discard(self, ca_dir: Path, ref: KeyReference) -> None:
        if ref.backend == self.kind:
            _inside(ca_dir, ref.locator).unlink(missing_ok=True)

    def signer(self, ca_dir: Path, ref: KeyReference) -> CaSigningKey:
        if ref.backend != self.kind:
            raise KeyBackendConfigError(
                f"this CA key lives in a {ref.backend!r} backend, not in encrypted files"
            )
        path = _inside(ca_dir, ref.locator)
        try:
            blob = path.read_bytes()
        except FileNotFoundError as exc:
            raise CaStateCorruptError(f"CA key file {path} is missing") from exc
        ca_id = path.name.removesuffix(".key.sealed")
        der = open_secret(self._master_key, blob, sealed_key_aad(ca_id))
        key = serialization.load_der_private_key(der, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CaStateCorruptError(f"CA key file {path} holds an unsupported key type")
        return key


def _inside(ca_dir: Path, locator: str) -> Path:
    """Resolve a manifest path and refuse one that points outside the CA directory."""
    base = ca_dir.resolve()
    path = (base / locator).resolve()
    if not path.is_relative_to(base):
        raise CaStateCorruptError(f"manifest path {locator!r} points outside {base}")
    return path


def rewrap_sealed_ca_keys(ca_dir: Path, old: MasterKey, new: MasterKey) -> int:
    """Re-encrypt every sealed CA key file under a new master key; returns how many."""
    key_dir = ca_dir / KEY_DIR
    if not key_dir.is_dir():
        return 0
    count = 0
    for path in sorted(key_dir.glob("*.key.sealed")):
        aad = sealed_key_aad(path.name.removesuffix(".key.sealed"))
        write_atomic(path, rewrap_secret(old, new, path.read_bytes(), aad), mode=0o600)
        count += 1
    return count
