"""A throwaway fleet CA for tests: keys are made at run time, nothing is checked in."""

from __future__ import annotations

import ipaddress
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class TestCA:
    __test__ = False
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "test fleet root") -> TestCA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, *, server: bool = False,
              validity: timedelta = timedelta(days=1)) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) for a device/client (CN=cn) or a 127.0.0.1 server."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        san: list[x509.GeneralName] = (
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            if server else [x509.UniformResourceIdentifier(f"urn:fleetguard:device:{cn}")]
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + validity)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)

    def write_pair(self, directory: Path, stem: str, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        key, cert = self.issue(cn, server=server)
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
        key_path.write_bytes(key)
        os.chmod(key_path, 0o600)
        cert_path.write_bytes(cert)
        return key_path, cert_path

    def device_state_dir(self, state_dir: Path, *, server: str = "https://127.0.0.1:9",
                         device_id: str | None = None) -> str:
        """A state dir as `fleetguard agent enroll` leaves it, for a new device id."""
        device_id = device_id or str(uuid.uuid4())
        key, cert = self.issue(device_id)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (state_dir / "device.key").write_bytes(key)
        os.chmod(state_dir / "device.key", 0o600)
        (state_dir / "device.crt").write_bytes(cert)
        (state_dir / "ca.pem").write_bytes(self.pem)
        not_after = x509.load_pem_x509_certificate(cert).not_valid_after_utc
        (state_dir / "identity.json").write_text(json.dumps({
            "device_id": device_id, "server": server, "serial": "00",
            "not_after": not_after.isoformat(),
        }))
        return device_id
