"""Helpers the tests share: strong passwords, TOTP codes, logging in through the API, CSRs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from fleetguard.operators import totp


def strong_password() -> str:
    return "Fg-" + secrets.token_urlsafe(18)


def secret_from_uri(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


def code_for(secret: str, steps_ahead: int = 0) -> str:
    return totp.code_at_step(secret, totp.current_step() + steps_ahead)


@dataclass
class LoggedIn:
    client: TestClient
    username: str
    password: str
    csrf: str
    totp_secret: str | None = None
    recovery_codes: list[str] | None = None

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


def login_admin_enrolling_mfa(client: TestClient, username: str, password: str) -> LoggedIn:
    """Password -> enrollment challenge -> new TOTP secret -> confirm with a code."""
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    assert r.json()["step"] == "mfa_enrollment_required"
    challenge = r.json()["challenge"]
    r = client.post("/api/v1/auth/mfa/enroll", json={"challenge": challenge})
    assert r.status_code == 200, r.text
    secret = secret_from_uri(r.json()["otpauth_uri"])
    r = client.post(
        "/api/v1/auth/mfa/enroll/confirm", json={"challenge": challenge, "code": code_for(secret)}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return LoggedIn(client, username, password, body["csrf_token"], secret, body["recovery_codes"])


def login_password_only(client: TestClient, username: str, password: str) -> LoggedIn:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    assert r.json()["step"] == "done", r.text
    return LoggedIn(client, username, password, r.json()["csrf_token"])


def csr_pem(common_name: str = "device") -> str:
    """A P-256 certificate request for a fresh key (the key is not kept)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()
