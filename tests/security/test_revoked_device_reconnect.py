"""Attack: a device whose certificate was revoked comes back with it.

The device (or whoever copied its key) is found compromised; an operator revokes its
certificate through the operator API (``POST /api/v1/certificates/{serial}/revoke``) of
a running ``fleetguard serve``. Against the real parts: Mosquitto as ``fleetguard broker``
configures it (CRL file, dynamic-security roles, the sync loop that reloads the CRL and
kicks the device) and the mutual-TLS device endpoint of that ``fleetguard serve``:

- the broker refuses the old certificate in the TLS handshake ("certificate revoked",
  from the reloaded CRL) within seconds, the live session is dropped and the device's own
  reconnects never get back in;
- the device endpoint refuses the old certificate at the next request, even on a
  connection opened before the revocation: 401 ``device_certificate_rejected``.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetguard.operators import Role, tokens
from fleetguard.operators import service as operators
from tests.broker.conftest import (
    Client,
    DeviceCreds,
    Fleet,
    drain_until,
)
from tests.integration.server import FLEETGUARD
from tests.processes import free_port, stop_process
from tests.support import strong_password

pytestmark = pytest.mark.process

CUT_OFF_S = 5.0


@dataclass
class Served:
    """``fleetguard serve`` over the fleet's installation."""

    data_dir: Path
    port: int
    device_port: int
    log: Path
    auth: dict[str, str]  # an operator's API token

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca" / "bundle.pem"

    def api(self) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=ctx,
                            headers=self.auth, timeout=30)

    def as_device(self, creds: DeviceCreds) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(creds.cert, creds.key)
        return httpx.Client(base_url=f"https://127.0.0.1:{self.device_port}", verify=ctx,
                            timeout=30)


@pytest.fixture(scope="module")
def server(fleet: Fleet) -> Iterator[Served]:
    data_dir = fleet.tmp / "data"
    with fleet.db.session() as session:
        operators.create_operator(session, username="responder", password=strong_password(),
                                  role=Role.OPERATOR, actor="test", issuer=None)
        token = tokens.create_api_token(session, username="responder", name="response",
                                           role=None, ttl=None, actor="test",
                                           issuer=None).token
    served = Served(data_dir, free_port(), free_port(), fleet.tmp / "serve.log",
                    {"Authorization": f"Bearer {token}"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    with served.log.open("w") as log:
        process = subprocess.Popen(
            [*FLEETGUARD, "serve", "--data-dir", str(data_dir), "--port", str(served.port),
             "--device-port", str(served.device_port), "--log-format", "json"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, served.log.read_text()
            try:
                with served.api() as api:
                    if api.get("/healthz").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, served.log.read_text()
            time.sleep(0.2)
        yield served
    finally:
        stop_process(process)


def _device(fleet: Fleet) -> DeviceCreds:
    creds = fleet.enroll(f"cam-{uuid.uuid4().hex[:8]}")
    fleet.wait_entitled(creds.device_id)
    return creds


def _revoke(server: Served, creds: DeviceCreds) -> None:
    with server.api() as api:
        r = api.post(f"/api/v1/certificates/{creds.serial_hex}/revoke",
                     json={"reason": "key_compromise"})
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None


def _broker_tls_refusal(fleet: Fleet, creds: DeviceCreds) -> str | None:
    """The broker's TLS answer to this certificate: None if it accepts the handshake (it
    then waits for MQTT's CONNECT), else the error it sends (a TLS alert)."""
    ctx = ssl.create_default_context(cafile=str(fleet.files.ca_bundle))
    ctx.load_cert_chain(creds.cert, creds.key)
    raw = socket.create_connection((fleet.files.connect_host, fleet.files.port), timeout=5)
    try:
        with ctx.wrap_socket(raw, server_hostname=fleet.files.connect_host) as tls:
            tls.settimeout(1.0)
            try:
                tls.recv(1)  # TLS 1.3: the server's verdict on our certificate comes now
            except TimeoutError:
                return None
            return "closed without an alert"
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc)
    finally:
        raw.close()


def test_revoked_device_reconnect_to_the_broker_is_refused(
    fleet: Fleet, server: Served
) -> None:
    creds = _device(fleet)
    witness = _device(fleet)
    platform = Client(fleet.files, fleet.files.service_cert, fleet.files.service_key)
    assert platform.connect()
    assert not platform.subscribe("fg/d/+/#").is_failure
    live = Client(fleet.files, creds.cert, creds.key, client_id=creds.device_id)
    assert live.connect()
    try:
        rc = live.publish(f"fg/d/{creds.device_id}/telemetry", b"before")
        assert rc is not None and not rc.is_failure
        assert _broker_tls_refusal(fleet, creds) is None  # the control

        _revoke(server, creds)

        assert live.gone.wait(CUT_OFF_S), "the revoked device is still connected"
        deadline = time.monotonic() + CUT_OFF_S
        while (refusal := _broker_tls_refusal(fleet, creds)) is None:
            assert time.monotonic() < deadline, "the broker still accepts the certificate"
            time.sleep(0.2)
        print(f"the broker, after the revocation: {refusal}")
        assert "revoked" in refusal, refusal
        # For good: the old session's own reconnects (paho retries every second) and a
        # fresh MQTT connection both stay out, and nothing more reaches the platform.
        time.sleep(1.5)
        assert live.connects == 1, "the revoked device got back in"
        assert _broker_tls_refusal(fleet, creds) is not None
        fresh = Client(fleet.files, creds.cert, creds.key, client_id=creds.device_id)
        assert not fresh.connect(), "a fresh connection with the revoked certificate got in"
        fresh.close()
        marker = f"marker-{uuid.uuid4().hex}".encode()
        sender = Client(fleet.files, witness.cert, witness.key)
        assert sender.connect()
        sender.publish(f"fg/d/{witness.device_id}/heartbeat", marker)
        sender.close()
        got = drain_until(platform.messages, marker)
    finally:
        live.close()
        platform.close()
    assert [p for t, p in got if creds.device_id in t and p != b"before"] == []


def test_revoked_device_https_request_to_the_device_endpoint_is_refused(
    fleet: Fleet, server: Served
) -> None:
    creds = _device(fleet)
    with server.as_device(creds) as device:  # one keep-alive connection throughout
        r = device.get("/v1/whoami")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == creds.device_id
        assert device.get("/v1/commands").status_code == 200

        _revoke(server, creds)

        for r in (device.get("/v1/whoami"), device.get("/v1/commands")):
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "device_certificate_rejected"
    with server.as_device(creds) as again:  # nor on a new connection
        r = again.get("/v1/whoami")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "device_certificate_rejected"
