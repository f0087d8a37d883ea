"""Detection end to end: a real `fleetguard serve` (SQLite and PostgreSQL), a device enrolled
for real reporting over HTTPS with its own certificate, and the alarm in the operator API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetguard.core.clock import utcnow
from fleetguard.protocol import TelemetryReport, encode_message, to_millis
from fleetguard.sim import ContextFactory, SimIdentity, provision_fleet
from tests.agent.pki import TestCA
from tests.detect.support import listening, net, report
from tests.integration.server import RunningServer, start_server
from tests.notify.receivers import HttpsReceiver, verify_signature

pytestmark = pytest.mark.process
SCAN_FAILURES_PER_S = 155  # Mirai-style scanning: most SYNs refused


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[RunningServer]:
    running = start_server(tmp_path, database_url)
    yield running
    running.stop()


def _token(server: RunningServer) -> str:
    created = server.cli("token", "create", "--operator", "admin", "--name", "detection")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _enroll(server: RunningServer, token: str) -> SimIdentity:
    [identity] = asyncio.run(provision_fleet(
        server=server.base_url, device_endpoint=f"https://127.0.0.1:{server.device_port}",
        api_token=token, ca_pem=(server.data_dir / "ca" / "bundle.pem").read_bytes(),
        names=["cam-scanning"]))
    return identity


def _send(server: RunningServer, identity: SimIdentity, message: TelemetryReport) -> None:
    contexts = ContextFactory((server.data_dir / "ca" / "bundle.pem").read_bytes())
    try:
        with httpx.Client(verify=contexts(identity), timeout=30) as device:
            r = device.post(f"https://127.0.0.1:{server.device_port}/v1/telemetry",
                            content=encode_message(message, "application/cbor"),
                            headers={"Content-Type": "application/cbor"})
    finally:
        contexts.close()
    assert r.status_code == 202, r.text


def _alarms(server: RunningServer, token: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    client = server.client()
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get("/api/v1/alarms", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["alarms"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_port_scan_through_the_real_ingest_path_is_an_alarm_within_two_reports(
    server: RunningServer,
) -> None:
    token = _token(server)
    identity = _enroll(server, token)
    now = to_millis(utcnow())
    minute = int(timedelta(minutes=1).total_seconds() * 1000)
    sshd = [listening(22)]
    _send(server, identity, report(now - minute, seq=1, counters=net(tcp_attempt_fails=3),
                                   listeners=sshd))
    scanned = 3 + SCAN_FAILURES_PER_S * 60
    _send(server, identity, report(now, seq=2, counters=net(tcp_attempt_fails=scanned),
                                   listeners=sshd))
    alarms = _alarms(server, token)
    scans = [a for a in alarms if a["rule_id"] == "scan.refused-connections"]
    assert len(scans) == 1, alarms
    [alarm] = scans
    assert (alarm["device_id"], alarm["family"], alarm["state"]) == (
        identity.device_id, "scanning", "active")
    assert alarm["observed"] == pytest.approx(SCAN_FAILURES_PER_S, rel=0.01)
    assert alarm["reports"]["first_seq"] == alarm["reports"]["last_seq"] == 2
    status = server.client().get("/api/v1/detection/status",
                                 headers={"Authorization": f"Bearer {token}"}).json()
    assert status["running"] and status["stats"]["processed"] >= 2


def _scan(server: RunningServer, identity: SimIdentity) -> None:
    now = to_millis(utcnow())
    minute = int(timedelta(minutes=1).total_seconds() * 1000)
    _send(server, identity, report(now - minute, seq=1, counters=net(tcp_attempt_fails=3)))
    scanned = 3 + SCAN_FAILURES_PER_S * 60
    _send(server, identity, report(now, seq=2, counters=net(tcp_attempt_fails=scanned)))


def test_an_alarm_reaches_a_soc_webhook_signed(server: RunningServer, tmp_path: Path) -> None:
    token = _token(server)
    ca = TestCA.create("soc root")
    receiver = HttpsReceiver(ca, tmp_path / "soc")
    try:
        created = server.client().post(
            "/api/v1/notifications/destinations", headers={"Authorization": f"Bearer {token}"},
            json={"kind": "webhook", "name": "soc", "url": receiver.url,
                  "allow_private_network": True, "ca_pem": ca.pem.decode()})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        identity = _enroll(server, token)
        _scan(server, identity)
        [delivered] = receiver.wait_for(1, timeout=30)
    finally:
        receiver.close()
    assert verify_signature(secret, delivered.headers, delivered.body)
    event = delivered.event
    assert (event["kind"], event["device_id"], event["cef"]["signature_id"]) == (
        "alarm.opened", identity.device_id, "scan.refused-connections")
    assert event["body"]["family"] == "scanning"
