"""The fleet simulator: N virtual devices on one event loop, each with its own key,
certificate and mutual-TLS connection (MQTT or HTTPS), reporting on an interval.

Compromise scenarios are scheduled on randomly chosen devices and written as ground
truth (device, scenario, start and end) to a JSON file as soon as they are planned, and
again at the end with the number of reports each one affected. They start after a warm-up
of normal reports (what first-seen rules and learned baselines learn from), staggered
over the next few reports (with the demo's 10-second interval, between minute 2 and 4,
however long the run; a run too short for that keeps them in its middle), and go on to
its end: a compromised device stays compromised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from fleetguard.protocol import (
    ContentType,
    TelemetryReport,
    TopicKind,
    device_topic,
    encode_message,
)
from fleetguard.sim.http import MiniHttpsClient
from fleetguard.sim.identity import SimIdentity
from fleetguard.sim.mqtt import MiniMqttClient
from fleetguard.sim.profiles import (
    ActiveScenario,
    DeviceModel,
    Profile,
    Scenario,
    scenario_target,
)
from fleetguard.sim.transports import SimTransport

CONNECT_ATTEMPTS = 4
CONNECT_RETRY_S = 1.0
logger = logging.getLogger(__name__)
PROFILE_MIX = ((Profile.CAMERA, 0.4), (Profile.SENSOR, 0.45), (Profile.GATEWAY, 0.15))


@dataclass(frozen=True, slots=True)
class SimSettings:
    transport: SimTransport
    host: str  # the broker (mqtt) or the device endpoint (https)
    port: int
    interval_s: float = 60.0
    duration_s: float = 300.0
    compromise: int = 0
    scenarios: tuple[Scenario, ...] = tuple(Scenario)
    seed: int | None = None
    connect_concurrency: int = 200
    content_type: ContentType = ContentType.JSON
    # Attacks start after this many reports of normal behaviour, one after another over
    # the next ``attack_spread_reports`` (each capped at 40 % of a short run).
    attack_warm_up_reports: int = 12
    attack_spread_reports: int = 12

    def attack_starts_s(self, count: int) -> list[float]:
        """When each of ``count`` attacks starts, in seconds after the plan, evenly staggered."""
        cap = 0.4 * self.duration_s
        warm_up = min(self.attack_warm_up_reports * self.interval_s, cap)
        spread = min(self.attack_spread_reports * self.interval_s, cap)
        return [warm_up + spread * i / max(count - 1, 1) for i in range(count)]


@dataclass
class SimStats:
    devices: int = 0
    connected: int = 0
    connect_failures: int = 0
    reports_sent: int = 0
    reports_failed: int = 0
    reports_refused: int = 0
    commands_received: int = 0
    started_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class VirtualDevice:
    identity: SimIdentity
    model: DeviceModel
    context: ssl.SSLContext | None = None
    mqtt: MiniMqttClient | None = None
    https: MiniHttpsClient | None = None
    topic: str = ""


@dataclass(slots=True)
class GroundTruth:
    device: VirtualDevice
    active: ActiveScenario
    reports: int = 0

    def record(self) -> dict[str, Any]:
        def iso(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()

        return {
            "device_id": self.device.identity.device_id,
            "device_name": self.device.identity.name,
            "profile": self.device.model.profile.value,
            "scenario": self.active.scenario.value,
            "start": iso(self.active.start_ms),
            "end": iso(self.active.end_ms),
            "start_ms": self.active.start_ms,
            "end_ms": self.active.end_ms,
            "reports_affected": self.reports,
            **self.active.details(),
        }


def pick_profile(index: int, rng: random.Random) -> Profile:
    roll, total = rng.random(), 0.0
    for profile, share in PROFILE_MIX:
        total += share
        if roll < total:
            return profile
    return Profile.SENSOR


class FleetSimulator:
    def __init__(
        self,
        identities: list[SimIdentity],
        settings: SimSettings,
        context_for: Callable[[SimIdentity], ssl.SSLContext],
        *,
        profiles: list[Profile] | None = None,
        ground_truth: Path | None = None,
    ) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)  # noqa: S311 - simulation, not secrets
        now = int(time.time() * 1000)
        self.devices = [
            VirtualDevice(identity, DeviceModel(
                index=i, rng=random.Random(self._rng.getrandbits(64)),  # noqa: S311
                now_ms=now,
                profile=profiles[i] if profiles else pick_profile(i, self._rng),
            ))
            for i, identity in enumerate(identities)
        ]
        self._context_for = context_for
        self._ground_truth_path = ground_truth
        self.truth: list[GroundTruth] = []
        self.stats = SimStats(devices=len(self.devices))
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    # -- connect ------------------------------------------------------------------------

    async def connect_all(self, progress: Callable[[int], None] | None = None) -> None:
        limit = asyncio.Semaphore(self.settings.connect_concurrency)

        async def one(device: VirtualDevice) -> None:
            async with limit:
                # A freshly enrolled device may be refused until the broker's access sync
                # (about once a second) has granted it its topics: retry a few times.
                for attempt in range(CONNECT_ATTEMPTS):
                    try:
                        await self._connect(device)
                        self.stats.connected += 1
                        break
                    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                        await self._drop_connection(device)
                        if attempt + 1 == CONNECT_ATTEMPTS:
                            self.stats.connect_failures += 1
                            logger.warning("device %s could not connect: %s",
                                           device.identity.device_id, exc)
                        else:
                            await asyncio.sleep(CONNECT_RETRY_S * (attempt + 1))
                if progress is not None:
                    progress(self.stats.connected + self.stats.connect_failures)

        await asyncio.gather(*(one(d) for d in self.devices))

    async def _connect(self, device: VirtualDevice) -> None:
        if device.context is None:
            device.context = self._context_for(device.identity)
        s = self.settings
        if s.transport is SimTransport.MQTT:
            device_id = UUID(device.identity.device_id)
            device.topic = device_topic(device_id, TopicKind.TELEMETRY)
            device.mqtt = await MiniMqttClient.connect(
                s.host, s.port, device.context, client_id=device.identity.device_id,
                keepalive_s=max(int(s.interval_s * 2), 30),
                on_message=lambda _t, _p: self._command_seen(),
            )
            await device.mqtt.subscribe(device_topic(device_id, TopicKind.COMMAND))
        else:
            device.https = MiniHttpsClient(s.host, s.port, device.context)
            await device.https.open()

    async def _drop_connection(self, device: VirtualDevice) -> None:
        if device.mqtt is not None:
            with contextlib.suppress(OSError, ConnectionError):
                device.mqtt.disconnect()
            device.mqtt = None

    def _command_seen(self) -> None:
        self.stats.commands_received += 1

    async def close_all(self) -> None:
        for device in self.devices:
            if device.mqtt is not None:
                device.mqtt.disconnect()
            if device.https is not None:
                device.https.close()
        await asyncio.sleep(0)

    # -- scenarios ----------------------------------------------------------------------

    def plan_compromise(self, start_ms: int | None = None) -> list[GroundTruth]:
        s = self.settings
        start_ms = start_ms or int(time.time() * 1000)
        duration_ms = int(s.duration_s * 1000)
        count = min(s.compromise, len(self.devices))
        starts = s.attack_starts_s(count)
        for index, device in enumerate(self._rng.sample(self.devices, count)):
            scenario = s.scenarios[index % len(s.scenarios)]
            begin = start_ms + int(starts[index] * 1000)
            end = start_ms + duration_ms  # a compromised device stays compromised
            target, port = scenario_target(scenario, device.model)
            active = ActiveScenario(scenario, begin, end, target, port)
            device.model.add_scenario(active)
            self.truth.append(GroundTruth(device, active))
        self.write_ground_truth()
        return self.truth

    def write_ground_truth(self) -> None:
        if self._ground_truth_path is None:
            return
        document = {
            "generated_at": datetime.now(UTC).isoformat(),
            "devices": len(self.devices),
            "interval_s": self.settings.interval_s,
            "transport": self.settings.transport.value,
            "scenarios": [t.record() for t in self.truth],
        }
        tmp = self._ground_truth_path.with_name(self._ground_truth_path.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=2))
        tmp.replace(self._ground_truth_path)

    # -- run ----------------------------------------------------------------------------

    async def run(self) -> SimStats:
        """Report from every connected device until the duration is over or stop()."""
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.duration_s
        tasks = [asyncio.create_task(self._device_loop(d, deadline)) for d in self.devices]
        # Each device loop ends at the deadline or on stop(); the timeout is a backstop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.duration_s + s.interval_s + 60):
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.write_ground_truth()
        return self.stats

    async def _device_loop(self, device: VirtualDevice, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.interval_s
        await self._sleep(device.model.rng.uniform(0, interval))  # spread the fleet out
        while not self._stop.is_set() and loop.time() < deadline:
            next_at = loop.time() + interval
            await self._report(device)
            await self._sleep(next_at - loop.time())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._stop.wait()

    def next_report(self, device: VirtualDevice, now_ms: int) -> TelemetryReport:
        """The device's report at ``now_ms``, counted in the ground truth of its attacks."""
        report = device.model.report(now_ms)
        for truth in self.truth:
            if truth.device is device and truth.active.start_ms <= now_ms < truth.active.end_ms:
                truth.reports += 1
        return report

    async def _report(self, device: VirtualDevice) -> None:
        report = self.next_report(device, int(time.time() * 1000))
        payload = encode_message(report, self.settings.content_type)
        try:
            if device.mqtt is not None:
                if not device.mqtt.is_open:
                    await self._connect(device)
                assert device.mqtt is not None
                await device.mqtt.publish(device.topic, payload)
            elif device.https is not None:
                status, body = await device.https.request(
                    "POST", "/v1/telemetry", payload, self.settings.content_type.value)
                if status in (400, 413, 415, 422):
                    self.stats.reports_refused += 1
                    logger.warning("report refused: %s %s", status, body[:200])
                    return
                if not 200 <= status < 300:
                    self.stats.reports_failed += 1
                    return
            else:
                await self._connect(device)
                self.stats.reports_failed += 1
                return
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.stats.reports_failed += 1
            logger.info("device %s: report failed: %s", device.identity.device_id, exc)
            return
        self.stats.reports_sent += 1
