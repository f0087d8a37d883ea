"""Device-side enrollment and renewal: the key is made here and never leaves the device.

Trust in the platform comes only from the fleet root: given as a file (``--ca-file``) or
pinned by the SHA-256 fingerprint carried in the enrollment token. With a fingerprint,
the agent first downloads the public CA bundle, accepts it only if its root has that
fingerprint and the server's certificate on that very connection chains to it, and
then talks over a connection verified against that root. The token, the CSR and
everything after travel only over verified connections.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from pydantic import ValidationError

from fleetguard.core.errors import (
    AuthenticationError,
    FleetError,
    UntrustedInputError,
    ValidationFailedError,
)
from fleetguard.core.files import write_atomic
from fleetguard.core.tls import client_context
from fleetguard.protocol import (
    CA_BUNDLE_PATH,
    ENROLL_PATH,
    RENEW_PATH,
    CertificateResponse,
    EnrollRequest,
    RenewRequest,
    new_key_and_csr,
    parse_enrollment_token,
)

KEY_FILE = "device.key"
CERT_FILE = "device.crt"
CA_FILE = "ca.pem"
IDENTITY_FILE = "identity.json"


class EnrollmentFailedError(FleetError):
    code = "enrollment_failed"
    http_status = 502


class PinMismatchError(UntrustedInputError):
    code = "root_pin_mismatch"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    device_id: str
    server: str
    not_after: datetime
    state_dir: Path

    @property
    def key_path(self) -> Path:
        return self.state_dir / KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.state_dir / CERT_FILE

    @property
    def ca_path(self) -> Path:
        return self.state_dir / CA_FILE


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


def _pem_certs(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise UntrustedInputError("the server sent an unreadable CA bundle") from exc


def _server_name(url: str) -> x509.DNSName | x509.IPAddress:
    host = urlsplit(url).hostname or ""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def fetch_pinned_root(server: str, fingerprint: str, *, timeout: float = 15.0) -> bytes:
    """Download the CA bundle and prove it: root fingerprint and the live server chain."""
    url = server.rstrip("/") + CA_BUNDLE_PATH
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context()
    # Verification happens below, against the pinned root, before anything is trusted.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE


    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        leaf_der = tls.getpeercert(binary_form=True)
        request = (f"GET {parts.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                   "Accept: application/x-pem-file\r\n\r\n").encode()
        tls.sendall(request)
        response = b""
        while len(response) < 256 * 1024:
            chunk = tls.recv(65536)
            if not chunk:
                break
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or not leaf_der:
        raise EnrollmentFailedError("the server did not hand out its CA bundle")
    certs = _pem_certs(body)
    roots = [c for c in certs if c.issuer == c.subject]
    pinned = [
        c for c in roots
        if hmac.compare_digest(
            hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest(), fingerprint
        )
    ]
    if not pinned:
        raise PinMismatchError("the server's CA bundle does not hold the pinned fleet root")
    verifier = (
        PolicyBuilder().store(Store(pinned)).build_server_verifier(_server_name(server))
    )
    intermediates = [c for c in certs if c.issuer != c.subject]
    try:
        verifier.verify(x509.load_der_x509_certificate(leaf_der), intermediates)
    except VerificationError as exc:
        raise PinMismatchError(f"the server's certificate does not chain to the pinned root: "
                               f"{exc}") from exc
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pinned)


def _client(server: str, root_pem: bytes, cert: Path | None = None,
            key: Path | None = None) -> httpx.Client:
    with_cert = cert is not None and key is not None
    context = client_context(ca_pem=root_pem, cert_file=cert if with_cert else None,
                             key_file=key if with_cert else None)
    return httpx.Client(base_url=server.rstrip("/"), verify=context, timeout=30)


def _post(
    client: httpx.Client, path: str, body: EnrollRequest | RenewRequest
) -> CertificateResponse:
    try:
        response = client.post(path, json=body.model_dump(exclude_none=True))
    except httpx.HTTPError as exc:
        raise EnrollmentFailedError(f"could not reach the platform: {exc}") from exc
    if response.status_code != 201:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        raise EnrollmentFailedError(f"the platform refused: {message}")
    try:
        return CertificateResponse.model_validate_json(response.content)
    except ValidationError as exc:
        raise EnrollmentFailedError("the platform's answer is not a certificate response") from exc


def _store(state_dir: Path, server: str, key_pem: bytes,
           result: CertificateResponse) -> DeviceIdentity:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    _write_private(state_dir / KEY_FILE, key_pem)
    _write_private(state_dir / CERT_FILE, result.chain_pem.encode())
    _write_private(state_dir / CA_FILE, result.ca_bundle_pem.encode())
    identity = {"device_id": result.device_id, "server": server,
                "serial": result.serial, "not_after": result.not_after.isoformat()}
    _write_private(state_dir / IDENTITY_FILE, json.dumps(identity, indent=2).encode())
    return DeviceIdentity(result.device_id, server, result.not_after, state_dir)


def enroll_device(
    server: str, state_dir: Path, *, token: str | None = None, ca_file: Path | None = None,
    claim_cert: Path | None = None, claim_key: Path | None = None, serial: str | None = None,
) -> DeviceIdentity:
    if not token and not (claim_cert and claim_key and serial):
        raise AuthenticationError("give --token, or --claim-cert, --claim-key and --serial",
                                  code="enrollment_credential_required")
    pinned = parse_enrollment_token(token) if token else None  # refused here if malformed
    if ca_file is not None:
        root_pem = ca_file.read_bytes()
    elif pinned is not None:
        root_pem = fetch_pinned_root(server, pinned.root_fingerprint)
    else:
        raise AuthenticationError("claim enrollment needs --ca-file with the fleet root",
                                  code="root_required")
    key_pem, csr = new_key_and_csr()
    try:
        body = EnrollRequest(csr=csr, token=token, serial=None if token else serial)
    except ValidationError as exc:
        raise ValidationFailedError(f"not a valid enrollment request: {exc}") from None
    with _client(server, root_pem, claim_cert, claim_key) as client:
        result = _post(client, ENROLL_PATH, body)
    return _store(state_dir, server, key_pem, result)


def load_identity(state_dir: Path) -> DeviceIdentity:
    try:
        data = json.loads((state_dir / IDENTITY_FILE).read_text())
    except (FileNotFoundError, ValueError) as exc:
        raise AuthenticationError(f"no enrolled identity in {state_dir}",
                                  code="not_enrolled") from exc
    return DeviceIdentity(data["device_id"], data["server"],
                          datetime.fromisoformat(data["not_after"]), state_dir)


def device_client(identity: DeviceIdentity) -> httpx.Client:
    """An HTTPS client that shows the device certificate and trusts only the fleet CA."""
    return _client(identity.server, identity.ca_path.read_bytes(), identity.cert_path,
                   identity.key_path)


def renew_device_certificate(state_dir: Path) -> DeviceIdentity:
    """New key, new certificate, over mutual TLS with the current one; swapped atomically."""
    identity = load_identity(state_dir)
    key_pem, csr = new_key_and_csr()
    with device_client(identity) as client:
        result = _post(client, RENEW_PATH, RenewRequest(csr=csr))
    return _store(state_dir, identity.server, key_pem, result)
