"""Devices and reports for the telemetry tests."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from fleetguard.core.clock import utcnow
from fleetguard.identity import service as identity
from fleetguard.pki import FleetCA
from fleetguard.protocol import TelemetryReport, encode_message, to_millis
from fleetguard.registry import service as registry
from fleetguard.store import Database
from tests.protocol import samples
from tests.support import csr_pem

BOOT = samples.BOOT_ID
OTHER_BOOT = "9a9e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b"
INTERVAL_MS = 60_000


def add_device(db: Database, name: str = "cam") -> str:
    with db.session() as session:
        return registry.register_device(session, name=name, actor="test").id


def report(seq: int, at: datetime | None = None, *, boot: str = BOOT, interval_ms: int = INTERVAL_MS,
           **overrides: object) -> TelemetryReport:
    collected = to_millis(at or utcnow())
    fields: dict[str, object] = {
        "seq": seq, "collected_at_ms": collected, "period_start_ms": collected - interval_ms,
        "boot_id": boot,
    }
    fields.update(overrides)
    return samples.telemetry(**fields)


def body(message: TelemetryReport, content_type: str = "application/cbor") -> bytes:
    return encode_message(message, content_type)


DEVICE_ADDRESS = "198.51.100.7"


def enrolled_device(db: Database, ca: FleetCA, name: str = "cam") -> tuple[str, bytes]:
    """A registered device and its certificate (DER), enrolled with a one-time token."""
    with db.session() as session:
        device_id = registry.register_device(session, name=name, actor="test").id
        token, _ = identity.create_enrollment_token(session, ca, device_id=device_id,
                                                    actor="test", issuer=None)
        enrolled = identity.enroll_with_token(session, ca, token=token, csr=csr_pem(),
                                              source=DEVICE_ADDRESS)
    der = x509.load_pem_x509_certificate(enrolled.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER)
    return device_id, der


def device_client(app: FastAPI, certificate_der: bytes) -> TestClient:
    """A client of the device endpoint app presenting this certificate from DEVICE_ADDRESS,
    as uvicorn's peer-certificate protocol hands it to the app (``tls_peer``)."""

    async def with_peer_certificate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "state": {**scope.get("state", {}),
                                        "peer_cert_der": certificate_der}}
        await app(scope, receive, send)

    return TestClient(with_peer_certificate, base_url="https://device",
                      raise_server_exceptions=False, client=(DEVICE_ADDRESS, 50000))
