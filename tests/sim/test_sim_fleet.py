"""The simulator against a real `fleetguard serve`: real registration, real enrollment, one
mutual-TLS connection per device (HTTPS to the device endpoint, MQTT to a real Mosquitto
that trusts the fleet CA), and ground truth for the injected scenarios."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetguard.protocol import ContentType, TelemetryReport, decode_message
from fleetguard.sim import (
    ContextFactory,
    FleetSimulator,
    Scenario,
    SimIdentity,
    SimSettings,
    SimTransport,
    provision_fleet,
)
from tests.agent.mosquitto import Mosquitto, Subscriber, require_mosquitto
from tests.agent.pki import TestCA
from tests.integration.server import RunningServer, start_server

pytestmark = pytest.mark.process
DEVICES = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("sim"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api_token(server: RunningServer) -> str:
    created = server.cli("token", "create", "--operator", "admin", "--name", "sim")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _ca(server: RunningServer) -> bytes:
    return (server.data_dir / "ca" / "bundle.pem").read_bytes()


def _enroll(server: RunningServer, token: str, prefix: str, n: int = DEVICES) -> list[SimIdentity]:
    return asyncio.run(provision_fleet(
        server=server.base_url, device_endpoint=f"https://127.0.0.1:{server.device_port}",
        api_token=token, ca_pem=_ca(server), names=[f"{prefix}-{i}" for i in range(n)],
    ))


def test_https_fleet_enrolls_reports_and_writes_ground_truth(server: RunningServer, api_token: str, tmp_path: Path) -> None:
    identities = _enroll(server, api_token, "sim-h")
    assert len({i.device_id for i in identities}) == DEVICES
    assert all(b"BEGIN CERTIFICATE" in i.chain_pem for i in identities)
    listed = server.cli("device", "list")
    assert listed.returncode == 0 and "sim-h-19" in listed.stdout
    truth_file = tmp_path / "truth.json"
    settings = SimSettings(transport=SimTransport.HTTPS, host="127.0.0.1", port=server.device_port,
                           interval_s=1.0, duration_s=4.0, compromise=len(Scenario), seed=7)
    contexts = ContextFactory(_ca(server))

    async def scenario() -> FleetSimulator:
        sim = FleetSimulator(identities, settings, contexts, ground_truth=truth_file)
        await sim.connect_all()
        sim.plan_compromise()
        await sim.run()
        await sim.close_all()
        return sim

    try:
        sim = asyncio.run(scenario())
    finally:
        contexts.close()
    assert sim.stats.connected == DEVICES and sim.stats.connect_failures == 0
    assert sim.stats.reports_sent + sim.stats.reports_failed >= DEVICES * 3
    if sim.stats.reports_failed:  # the telemetry routes are not in this server yet
        pytest.xfail("the device endpoint does not accept telemetry yet")
    assert sim.stats.reports_refused == 0
    truth = json.loads(truth_file.read_text())
    assert truth["devices"] == DEVICES and len(truth["scenarios"]) == len(Scenario)
    assert {s["scenario"] for s in truth["scenarios"]} == {s.value for s in Scenario}
    ids = {i.device_id for i in identities}
    for record in truth["scenarios"]:
        assert {"device_id", "scenario", "start", "end", "start_ms", "end_ms", "profile",
                "reports_affected", "target", "port"} <= set(record)
        assert record["device_id"] in ids and record["start_ms"] < record["end_ms"]
    assert sum(s["reports_affected"] for s in truth["scenarios"]) >= 1


def test_mqtt_fleet_one_connection_per_device_with_its_own_certificate(server: RunningServer, api_token: str, tmp_path: Path) -> None:
    require_mosquitto()
    identities = _enroll(server, api_token, "sim-m", 10)
    ca_file = server.data_dir / "ca" / "bundle.pem"
    tls = server.data_dir / "tls"
    # A test platform identity for the subscriber, from a CA the broker also trusts.
    platform_ca = TestCA.create()
    bundle = tmp_path / "trust.pem"
    bundle.write_bytes(ca_file.read_bytes() + platform_ca.pem)
    broker = Mosquitto.configure(tmp_path / "broker", platform_ca, ca_file=bundle,
                                 server_pair=(tls / "server.key", tls / "server.crt"))
    broker.start()
    sub = None
    contexts = ContextFactory(_ca(server))
    try:
        sub = Subscriber(broker, ["fg/d/+/telemetry"])
        settings = SimSettings(transport=SimTransport.MQTT, host="127.0.0.1", port=broker.port,
                               interval_s=1.0, duration_s=3.0, compromise=2, seed=3)

        async def scenario() -> FleetSimulator:
            sim = FleetSimulator(identities, settings, contexts, ground_truth=tmp_path / "t.json")
            await sim.connect_all()
            sim.plan_compromise()
            await sim.run()
            await sim.close_all()
            return sim

        sim = asyncio.run(scenario())
        received = sub.wait_for(sim.stats.reports_sent, "/telemetry")
    finally:
        if sub is not None:
            sub.close()
        broker.stop()
        contexts.close()
    assert sim.stats.connected == 10 and sim.stats.reports_failed == 0
    assert len(received) == sim.stats.reports_sent >= 20
    by_device: dict[str, list[int]] = {}
    for topic, payload in received:
        report = decode_message(payload, ContentType.JSON)
        assert isinstance(report, TelemetryReport)
        by_device.setdefault(topic.split("/")[2], []).append(report.seq)
    # Each device wrote only to its own topic (the broker's ACL uses the certificate CN).
    assert set(by_device) == {i.device_id for i in identities}
    assert all(seqs == list(range(len(seqs))) for seqs in by_device.values())


def test_cli_sim_runs_end_to_end(server: RunningServer, api_token: str, tmp_path: Path) -> None:
    truth = tmp_path / "gt.json"
    result = subprocess.run(
        [sys.executable, "-c", "import typer; from fleetguard.cli.sim import sim_command; "
         "app = typer.Typer(); app.command()(sim_command); app()",
         "--devices", "5", "--server", server.base_url,
         "--device-endpoint", f"https://127.0.0.1:{server.device_port}", "--api-token", api_token,
         "--interval", "1", "--duration", "2", "--compromise", "2", "--ground-truth", str(truth),
         "--ca-file", str(server.data_dir / "ca" / "bundle.pem"), "--seed", "1"],
        env=server.env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "5/5 devices connected" in result.stderr
    assert len(json.loads(truth.read_text())["scenarios"]) == 2
    # Each device is registered with its profile as its model: detection's peers are its model's.
    listed = json.loads(server.cli("device", "list", "--json").stdout)
    models = {d["hardware_model"] for d in listed if d["name"].startswith("sim-https-")}
    assert models and models <= {"sim-camera", "sim-sensor", "sim-gateway"}
