"""A fleet CA made in the test and a plain Mosquitto that requires client certificates from it."""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.processes import free_port, stop_process, wait_until_listening

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class FleetCA:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test fleet CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool = False) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = Pair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.chmod(pair.key, 0o600)
        return pair


class Broker:
    """Mosquitto on a free loopback port: TLS only, client certificates from the fleet CA."""

    def __init__(self, directory: Path, ca: FleetCA, *, port: int | None = None,
                 extra: str = "") -> None:
        self.port = port or free_port()
        server = ca.issue("broker", server=True)
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        self.config.write_text(
            f"per_listener_settings false\n{user}persistence false\nlog_dest stderr\n"
            f"max_inflight_messages 0\nmax_queued_messages 1000000\n{extra}"
            f"listener {self.port} 127.0.0.1\ncafile {ca.ca_file}\ncertfile {server.cert}\n"
            f"keyfile {server.key}\nrequire_certificate true\nuse_identity_as_username true\n"
            f"tls_version tlsv1.2\nallow_anonymous false\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_until_listening(self.process, self.port,
                             describe=lambda: self.log.read_text(errors="replace"))

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
