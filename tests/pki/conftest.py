"""Fixtures of the pki tests: fresh CAs, CSR factories and the real peer, ``openssl verify``."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from fleetguard.keys import MasterKey
from fleetguard.pki import (
    EncryptedFileKeyBackend,
    FleetCA,
    KeyAlgorithm,
    PublishedCrls,
    init_fleet_ca,
)

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="session")
def master_key() -> MasterKey:
    return MasterKey(os.urandom(32))


@pytest.fixture(scope="session")
def file_backend(master_key: MasterKey) -> EncryptedFileKeyBackend:
    return EncryptedFileKeyBackend(master_key)


@pytest.fixture
def ca(tmp_path: Path, file_backend: EncryptedFileKeyBackend) -> Iterator[FleetCA]:
    """A fresh P-256 fleet CA with encrypted-file keys (about 20 ms to make)."""
    with init_fleet_ca(tmp_path / "ca", file_backend) as fleet_ca:
        yield fleet_ca


@pytest.fixture(scope="session", params=list(KeyAlgorithm), ids=lambda a: str(a))
def ca_of_each_algorithm(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    file_backend: EncryptedFileKeyBackend,
) -> Iterator[FleetCA]:
    """One CA per key algorithm, shared by the tests that only issue from it."""
    directory = tmp_path_factory.mktemp(f"ca-{request.param}")
    with init_fleet_ca(directory / "ca", file_backend, key_algorithm=request.param) as fleet_ca:
        yield fleet_ca


def new_device_key(kind: str = "p256") -> CertificateIssuerPrivateKeyTypes:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


def csr_for(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    common_name: str = "device",
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
    pem: bool = True,
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    for ext, critical in extensions or []:
        builder = builder.add_extension(ext, critical=critical)
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = hashes.SHA256()
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


@pytest.fixture
def device_csr() -> bytes:
    return csr_for(new_device_key("p256"))


@dataclass
class VerifyResult:
    ok: bool
    output: str


@pytest.fixture
def openssl_verify(tmp_path: Path) -> Callable[..., VerifyResult]:
    """Run the real peer: ``openssl verify -CAfile <bundle> [-crl_check[_all] -CRLfile]``."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")

    def verify(
        cert_pem: bytes,
        bundle_pem: bytes,
        *,
        crls: PublishedCrls | Path | None = None,
        check_all: bool = False,
        purpose: str = "sslclient",
    ) -> VerifyResult:
        name = uuid.uuid4().hex
        cert_file = tmp_path / f"{name}.pem"
        bundle_file = tmp_path / f"{name}.bundle.pem"
        cert_file.write_bytes(cert_pem)
        bundle_file.write_bytes(bundle_pem)
        cmd = [str(OPENSSL), "verify", "-purpose", purpose, "-CAfile", str(bundle_file)]
        if crls is not None:
            cmd += ["-crl_check_all" if check_all else "-crl_check"]
            crl_file = crls if isinstance(crls, Path) else crls.combined_pem
            cmd += ["-CRLfile", str(crl_file)]
        proc = subprocess.run([*cmd, str(cert_file)], capture_output=True, text=True, check=False)
        output = proc.stdout + proc.stderr
        return VerifyResult(ok=proc.returncode == 0 and f"{cert_file}: OK" in output, output=output)

    return verify


@pytest.fixture
def make_key() -> Callable[..., CertificateIssuerPrivateKeyTypes]:
    """``make_key("p256" | "p384" | "ed25519" | "rsa2048")``: a key as a device makes one."""
    return new_device_key


@pytest.fixture
def make_csr() -> Callable[..., bytes]:
    """``make_csr(key, common_name=..., extensions=[(ext, critical)], pem=True)``."""
    return csr_for
