"""The agent over HTTPS with mutual TLS: enrolled and renewed against a real `fleetguard serve`.

Telemetry goes to the server's device endpoint when it has the telemetry routes;
until then to a stub with the same contract and the same mutual TLS (the fleet CA from
the real server's data dir, the real server's certificate).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from fleetguard.agent.backoff import Backoff
from fleetguard.agent.config import AgentConfig
from fleetguard.agent.enroll import DeviceIdentity, device_client, enroll_device, load_identity
from fleetguard.agent.runner import AgentRunner
from fleetguard.agent.transport import HttpsTransport, Transport
from fleetguard.core.clock import utcnow
from fleetguard.protocol import ContentType, Heartbeat, TelemetryReport, encode_message, to_millis
from tests.agent.stub_endpoint import StubDeviceEndpoint
from tests.integration.server import FLEETGUARD, RunningServer, start_server

pytestmark = pytest.mark.process


@dataclass
class Endpoint:
    server: RunningServer
    stub: StubDeviceEndpoint
    real_routes: bool

    @property
    def device_url(self) -> str:
        return f"https://127.0.0.1:{self.server.device_port}"

    @property
    def telemetry_url(self) -> str:
        return self.device_url if self.real_routes else self.stub.url


def _has_telemetry_routes(server: RunningServer, state: Path) -> bool:
    beat = Heartbeat(sent_at_ms=to_millis(utcnow()), boot_id="0" * 8 + "-0000-0000-0000-" + "0" * 12,
                     uptime_s=1.0, agent_version="test")
    with device_client(load_identity(state)) as client:
        response = client.post("/v1/heartbeat", content=encode_message(beat, ContentType.JSON),
                               headers={"Content-Type": "application/json"})
    return response.status_code != 404


def _enroll(server: RunningServer, state: Path, name: str) -> str:
    device_id = server.cli("device", "add", name).stdout.strip()
    token = server.cli("device", "token", device_id).stdout.strip()
    enroll_device(f"https://127.0.0.1:{server.device_port}", state, token=token)
    return device_id


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    tmp = tmp_path_factory.mktemp("https-agent")
    server = start_server(tmp)
    tls = server.data_dir / "tls"
    stub = StubDeviceEndpoint(cert=tls / "server.crt", key=tls / "server.key",
                              ca=server.data_dir / "ca" / "bundle.pem")
    try:
        stub.start()
        _enroll(server, tmp / "probe", "probe")
        yield Endpoint(server, stub, _has_telemetry_routes(server, tmp / "probe"))
    finally:
        stub.stop()
        server.stop()


def _config(state: Path) -> AgentConfig:
    return AgentConfig(state_dir=state, interval_s=1.0, hash_max_files=1,
                       hash_max_file_bytes=256 * 1024, auth_logs=())


def _factory(endpoint: Endpoint) -> Callable[[DeviceIdentity], Transport]:
    return lambda identity: HttpsTransport(identity, base_url=endpoint.telemetry_url, timeout_s=10)


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_reports_in_order_then_renewal_and_reconnect(endpoint: Endpoint, tmp_path: Path) -> None:
    state = tmp_path / "dev"
    _enroll(endpoint.server, state, "https-1")
    old_serial = json.loads((state / "identity.json").read_text())["serial"]
    skew = timedelta(0)
    runner = AgentRunner(_config(state), _factory(endpoint), heartbeat_interval_s=1.0,
                         renew_check_s=0.2, backoff=Backoff(base_s=0.2, cap_s=1.0), clock=lambda: utcnow() + skew)

    async def scenario() -> None:
        nonlocal skew
        task = asyncio.create_task(runner.run())
        await _until(lambda: runner.stats.delivered >= 3, 30, "three reports")
        assert runner.stats.renewals == 0
        skew = runner.renewal_due_at() - utcnow() + timedelta(seconds=1)  # 2/3 of validity passed
        await _until(lambda: runner.stats.renewals >= 1 and runner.stats.connects >= 2, 90,
                     "renewal and reconnect")
        delivered = runner.stats.delivered
        await _until(lambda: runner.stats.delivered >= delivered + 2, 30, "reports after renewal")
        runner.stop()
        await task

    asyncio.run(scenario())
    assert runner.stats.refused == 0 and runner.stats.errors == []
    assert runner.stats.heartbeats >= 1
    assert json.loads((state / "identity.json").read_text())["serial"] != old_serial
    if not endpoint.real_routes:
        seqs = [r.seq for r in endpoint.stub.received["telemetry"] if isinstance(r, TelemetryReport)]
        mine = seqs[-runner.stats.delivered:]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)


def test_polled_commands_only_allowed_ones_run(endpoint: Endpoint, tmp_path: Path) -> None:
    # Commands are queued through the stub (same contract, same mutual TLS): queuing them
    # on the real server is the operator API's job and not wired into this test.
    state = tmp_path / "dev"
    _enroll(endpoint.server, state, "https-2")
    now = int(time.time() * 1000)
    endpoint.stub.pending_commands[:] = [
        {"v": 1, "type": "command", "id": "h1", "name": "run_checks", "issued_at_ms": now,
         "checks": ["ssh.permit_root_login", "net.telnet_listening"]},
        {"v": 1, "type": "command", "id": "h2", "name": "shell", "issued_at_ms": now},
        {"v": 1, "type": "command", "id": "h3", "name": "report_now", "issued_at_ms": now,
         "expires_at_ms": now + 1},
    ]
    runner = AgentRunner(_config(state), lambda i: HttpsTransport(i, base_url=endpoint.stub.url),
                         command_poll_s=0.3,
                         backoff=Backoff(base_s=0.2, cap_s=1.0))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await _until(lambda: len(endpoint.stub.received["result"]) >= 2, 30, "results")
        await asyncio.sleep(1.0)  # more polls: nothing runs twice
        runner.stop()
        await task

    asyncio.run(scenario())
    results = {r.id: r for r in endpoint.stub.received["result"]}
    assert set(results) == {"h1", "h3"} and len(endpoint.stub.received["result"]) == 2
    assert results["h1"].status == "ok"
    assert {c.check_id for c in results["h1"].checks} == {"ssh.permit_root_login", "net.telnet_listening"}
    assert results["h3"].status == "rejected" and results["h3"].detail == "expired"
    assert runner.dispatcher.rejections.total >= 1  # "shell" refused before any handler


def test_cli_run_stops_cleanly_on_sigterm(endpoint: Endpoint, tmp_path: Path) -> None:
    state = tmp_path / "dev"
    _enroll(endpoint.server, state, "https-3")
    if not endpoint.real_routes:  # point the enrolled identity at the stub's routes
        identity = json.loads((state / "identity.json").read_text())
        identity["server"] = endpoint.stub.url
        (state / "identity.json").write_text(json.dumps(identity))
    env = {**endpoint.server.env}
    process = subprocess.Popen(
        [*FLEETGUARD, "agent", "run", "--state-dir", str(state), "--interval", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(3)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped:" in err and " 0 delivered" not in err


def test_the_agent_samples_between_reports_and_delivers_what_it_saw(
    endpoint: Endpoint, tmp_path: Path,
) -> None:
    state = tmp_path / "dev"
    _enroll(endpoint.server, state, "https-4")
    config = replace(_config(state), interval_s=2.0, sample_interval_s=0.25)
    runner = AgentRunner(config, lambda i: HttpsTransport(i, base_url=endpoint.stub.url),
                         backoff=Backoff(base_s=0.2, cap_s=1.0))

    with socket.create_server(("127.0.0.1", 0)) as c2:
        port = c2.getsockname()[1]

        async def scenario() -> None:
            task = asyncio.create_task(runner.run())
            await _until(lambda: runner.stats.delivered >= 1, 30, "a first report")
            with socket.create_connection(c2.getsockname()):  # a 200 ms beacon
                accepted, _ = c2.accept()
                await asyncio.sleep(0.2)
            accepted.close()
            delivered = runner.stats.delivered
            await _until(lambda: runner.stats.delivered >= delivered + 2, 30, "two more reports")
            runner.stop()
            await task

        asyncio.run(scenario())
    beaconed = [r for r in endpoint.stub.received["telemetry"] if isinstance(r, TelemetryReport)
                and any(d.port == port for d in r.destinations_seen or ())]
    assert beaconed, "no delivered report shows the beacon"
    assert beaconed[0].samples is not None and beaconed[0].samples >= 4  # 2 s at 0.25 s
    assert runner.stats.samples >= 4 and runner.stats.errors == []
