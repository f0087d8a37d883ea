"""Enrollment on the device endpoint, version 1: the enrollment token, the bodies of
``POST /v1/enroll`` and ``POST /v1/renew``, and where the CA bundle is (``GET /v1/ca.pem``).

One definition for the agent, the simulator and the server. The version is in the paths
(``/v1/``) and in the token's prefix (``fge1``); a change to a field or to the token's
shape is a new version, not an edit.

The token is ``fge1.<secret>.<root fingerprint>``: a single-use secret (URL-safe base64,
20-100 characters) and the SHA-256 of the fleet root certificate (64 lower-case hex
digits), with which the device pins the platform before it sends the secret anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from fleetguard.core.errors import AuthenticationError

ENROLLMENT_VERSION = 1
ENROLL_PATH = f"/v{ENROLLMENT_VERSION}/enroll"
RENEW_PATH = f"/v{ENROLLMENT_VERSION}/renew"
# The fleet's CA certificates (PEM), which a device with only a token fetches and accepts
# once its root matches the token's fingerprint.
CA_BUNDLE_PATH = f"/v{ENROLLMENT_VERSION}/ca.pem"
ENROLLMENT_TOKEN_PREFIX = "fge1"  # noqa: S105 - a format marker, not a secret
MAX_CSR_CHARS = 16384
MAX_TOKEN_CHARS = 300
MAX_SERIAL_CHARS = 128

_TOKEN = re.compile(
    rf"{ENROLLMENT_TOKEN_PREFIX}\.(?P<secret>[A-Za-z0-9_-]{{20,100}})\.(?P<root>[0-9a-f]{{64}})",
    re.ASCII,
)


class MalformedEnrollmentTokenError(AuthenticationError):
    """Not the shape of an enrollment token (the same code as a token the server refuses,
    so a client handles one answer)."""

    code = "enrollment_token_invalid"


@dataclass(frozen=True, slots=True)
class EnrollmentToken:
    secret: str
    root_fingerprint: str  # SHA-256 of the fleet root certificate (DER), lower-case hex

    def __str__(self) -> str:
        return f"{ENROLLMENT_TOKEN_PREFIX}.{self.secret}.{self.root_fingerprint}"


def parse_enrollment_token(text: str) -> EnrollmentToken:
    """The token's parts, or :class:`MalformedEnrollmentTokenError`; surrounding
    whitespace (a pasted line end) is forgiven, nothing else."""
    match = _TOKEN.fullmatch(text.strip())
    if match is None:
        raise MalformedEnrollmentTokenError("not a fleetguard enrollment token")
    return EnrollmentToken(match["secret"], match["root"])


def new_key_and_csr() -> tuple[bytes, str]:
    """A new P-256 device key (unencrypted PKCS#8 PEM, to keep on the device) and the CSR
    for it (PEM) that :class:`EnrollRequest` and :class:`RenewRequest` carry."""
    # Imported here: the agent's and the simulator's enrollment need it, importing the
    # protocol does not (the CLI's --help stays fast).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetguard device")]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollRequest(_Request):
    """With a one-time ``token``; or with the batch claim certificate and its ``serial``."""

    csr: str = Field(min_length=1, max_length=MAX_CSR_CHARS,
                     description="PEM certificate request")
    token: str | None = Field(default=None, max_length=MAX_TOKEN_CHARS)
    serial: str | None = Field(default=None, max_length=MAX_SERIAL_CHARS)


class RenewRequest(_Request):
    """A CSR for a new key, sent over mutual TLS with the current certificate."""

    csr: str = Field(min_length=1, max_length=MAX_CSR_CHARS)


class CertificateResponse(BaseModel):
    """The answer to both: the device's new certificate and what it needs to trust."""

    device_id: str = Field(max_length=64)
    serial: str = Field(max_length=64, description="certificate serial, lower-case hex")
    certificate_pem: str
    chain_pem: str = Field(description="the certificate and its issuing CA, for TLS")
    ca_bundle_pem: str = Field(description="the fleet's CA certificates, to trust the server")
    not_after: AwareDatetime
