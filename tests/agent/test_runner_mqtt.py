"""The agent over MQTT against a real Mosquitto (client certs from a CA made here)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from uuid import UUID

import pytest

from fleetguard.agent.backoff import Backoff
from fleetguard.agent.config import AgentConfig
from fleetguard.agent.enroll import DeviceIdentity, load_identity
from fleetguard.agent.runner import AgentRunner
from fleetguard.agent.transport import (
    BrokerAddress,
    MqttTransport,
    Outgoing,
    SendOutcome,
    Transport,
)
from fleetguard.protocol import (
    CommandResult,
    ContentType,
    TelemetryReport,
    TopicKind,
    decode_message,
    device_topic,
)
from tests.agent.mosquitto import Mosquitto, Subscriber, require_mosquitto
from tests.agent.pki import TestCA

pytestmark = pytest.mark.process


@pytest.fixture
def ca() -> TestCA:
    return TestCA.create()


@pytest.fixture
def broker(tmp_path: Path, ca: TestCA) -> Iterator[Mosquitto]:
    require_mosquitto()
    running = Mosquitto.configure(tmp_path / "broker", ca)
    running.start()
    yield running
    running.stop()


def _config(state: Path) -> AgentConfig:
    return AgentConfig(state_dir=state, interval_s=1.0, hash_max_files=1,
                       hash_max_file_bytes=256 * 1024, auth_logs=())


def _factory(broker: Mosquitto) -> Callable[[DeviceIdentity], Transport]:
    address = BrokerAddress.parse(broker.url)
    return lambda identity: MqttTransport(identity, address, timeout_s=5)


def _seqs(sub: Subscriber) -> list[int]:
    out = []
    for _, payload in sub.received("/telemetry"):
        message = decode_message(payload, ContentType.JSON)
        assert isinstance(message, TelemetryReport)
        out.append(message.seq)
    return out


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_transport_delivers_only_to_its_own_topics(tmp_path: Path, ca: TestCA, broker: Mosquitto) -> None:
    device_id = ca.device_state_dir(tmp_path / "dev")
    sub = Subscriber(broker, ["fg/d/#"])
    try:
        async def scenario() -> list[SendOutcome]:
            transport = MqttTransport(load_identity(tmp_path / "dev"),
                                      BrokerAddress.parse(broker.url), timeout_s=5)
            await transport.connect()
            outcomes = await transport.send_batch(
                TopicKind.HEARTBEAT, [Outgoing(b'{"hello": %d}' % i, ContentType.JSON) for i in range(5)])
            await transport.close()
            return outcomes

        assert asyncio.run(scenario()) == [SendOutcome.DELIVERED] * 5
        topics = {topic for topic, _ in sub.wait_for(5)}
        assert topics == {device_topic(UUID(device_id), TopicKind.HEARTBEAT)}
    finally:
        sub.close()


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, broker: Mosquitto) -> None:
    TestCA.create("stranger").device_state_dir(tmp_path / "dev")

    async def scenario() -> None:
        transport = MqttTransport(load_identity(tmp_path / "dev"), BrokerAddress.parse(broker.url),
                                  timeout_s=5)
        await transport.connect()

    from fleetguard.agent.transport import TransportError

    with pytest.raises(TransportError):
        asyncio.run(scenario())


class _PublishLog:
    """The seqs of the telemetry reports the agent handed to the broker, in the order it sent them."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seqs: list[int] = []
        self._address = BrokerAddress.parse(broker.url)

    def factory(self, identity: DeviceIdentity) -> Transport:
        log = self.seqs

        class Logged(MqttTransport):
            async def send_batch(self, kind: TopicKind, messages: Sequence[Outgoing]) -> list[SendOutcome]:
                if kind is TopicKind.TELEMETRY:
                    for message in messages:
                        report = decode_message(message.payload, ContentType.JSON)
                        assert isinstance(report, TelemetryReport)
                        log.append(report.seq)
                return await super().send_batch(kind, messages)

        return Logged(identity, self._address, timeout_s=5)


def test_zero_loss_and_order_across_a_broker_restart(tmp_path: Path, ca: TestCA, broker: Mosquitto) -> None:
    device_id = ca.device_state_dir(tmp_path / "dev")
    sub = Subscriber(broker, [f"fg/d/{device_id}/telemetry"])
    published = _PublishLog(broker)
    runner = AgentRunner(_config(tmp_path / "dev"), published.factory,
                         backoff=Backoff(base_s=0.2, cap_s=1.0))
    outage_collected = 0

    async def scenario() -> None:
        nonlocal outage_collected
        task = asyncio.create_task(runner.run())
        await _until(lambda: len(set(_seqs(sub))) >= 2, 20, "first reports")
        broker.stop()
        before = runner.stats.collected
        await asyncio.sleep(3.5)  # the agent keeps collecting into its buffer
        outage_collected = runner.stats.collected - before
        broker.start()
        await asyncio.sleep(1.0)
        runner.stop()  # stop collecting more, but wait for delivery of everything collected
        target = runner.stats.collected
        await task
        # A second run of the agent delivers whatever the first one left in the buffer.
        second = AgentRunner(_config(tmp_path / "dev"), published.factory,
                             backoff=Backoff(base_s=0.2, cap_s=1.0), heartbeat_interval_s=30)
        task2 = asyncio.create_task(second.run())
        await _until(lambda: len(set(_seqs(sub))) >= target + second.stats.collected, 20,
                     "every report after the restart")
        second.stop()
        await task2

    try:
        asyncio.run(scenario())
        time.sleep(0.3)
        seqs = _seqs(sub)
    finally:
        sub.close()
    assert outage_collected >= 2, "nothing was collected while the broker was down"
    # Nothing lost: every report collected reached the platform.
    assert sorted(set(seqs)) == list(range(len(set(seqs))))
    # The agent sends in order, at least once: its first send of each report is in seq order, and a
    # repeat is only a resend of a report the broker had not acknowledged. (The order of arrival is
    # the broker's: a message Mosquitto restores from its persistence file after a restart can reach
    # the subscriber after a newer one, which is why ingestion keys reports by seq, not arrival.)
    first_sends = list(dict.fromkeys(published.seqs))
    assert first_sends == list(range(len(first_sends)))
    assert set(first_sends) == set(seqs)
    assert len(published.seqs) - len(first_sends) <= 32


def _command(command_id: str, name: str, **extra: object) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps({"v": 1, "type": "command", "id": command_id, "name": name,
                       "issued_at_ms": now, **extra}).encode()


def test_only_allowed_commands_run_and_results_come_back(tmp_path: Path, ca: TestCA, broker: Mosquitto) -> None:
    device_id = ca.device_state_dir(tmp_path / "dev")
    sub = Subscriber(broker, [f"fg/d/{device_id}/cmd/result", f"fg/d/{device_id}/telemetry"])
    renewed: list[Path] = []

    def renew(state_dir: Path) -> DeviceIdentity:  # a stand-in for the server's /v1/renew
        renewed.append(state_dir)
        ca.device_state_dir(state_dir, device_id=device_id)
        return load_identity(state_dir)

    checks_run: list[object] = []

    def checks(ids: object) -> list:
        checks_run.append(ids)
        from fleetguard.agent.checks import run_checks
        return run_checks(ids)  # type: ignore[arg-type]

    runner = AgentRunner(_config(tmp_path / "dev"), _factory(broker), renew=renew, checks=checks,
                         backoff=Backoff(base_s=0.2, cap_s=1.0))
    cmd_topic = f"fg/d/{device_id}/cmd"

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await _until(lambda: runner.stats.connects >= 1 and len(_seqs(sub)) >= 1, 20, "connection")
        sub.publish(cmd_topic, _command("c1", "run_checks", checks=["fs.passwd_world_writable"]))
        sub.publish(cmd_topic, _command("c2", "reboot"))  # not an allowed command
        sub.publish(cmd_topic, b'{"v": 1, "type": "command", "id": "c3", "name": "exec", "cmd": "rm -rf /"}')
        sub.publish(cmd_topic, _command("c4", "report_now"))
        sub.publish(cmd_topic, _command("c1", "run_checks"))  # a replay
        await _until(lambda: len(sub.received("/cmd/result")) >= 2, 20, "results")
        sub.publish(cmd_topic, _command("c5", "rotate_certificate"))
        await _until(lambda: len(sub.received("/cmd/result")) >= 3, 20, "rotation result")
        await _until(lambda: runner.stats.connects >= 2, 20, "reconnect with the new certificate")
        runner.stop()
        await task

    asyncio.run(scenario())
    time.sleep(0.2)
    results = {}
    for _, payload in sub.received("/cmd/result"):
        result = decode_message(payload, ContentType.JSON)
        assert isinstance(result, CommandResult)
        results.setdefault(result.id, []).append(result)
    sub.close()
    assert set(results) == {"c1", "c4", "c5"}
    # The replay of c1 is not run and not answered again (that would overwrite the result).
    [first] = results["c1"]
    assert first.status == "ok" and [c.check_id for c in first.checks or []] == ["fs.passwd_world_writable"]
    assert results["c4"][0].status == "ok" and "queued" in (results["c4"][0].detail or "")
    assert results["c5"][0].status == "ok" and renewed == [tmp_path / "dev"]
    assert checks_run == [["fs.passwd_world_writable"]]  # the replay and the unknown ones never ran
    assert runner.dispatcher.rejections.total == 2  # reboot and exec: refused before any handler
