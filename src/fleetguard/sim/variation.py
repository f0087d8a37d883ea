"""Benign variation: what normal devices do that is not an attack, for judging detection.

A :class:`BenignDevice` wraps a simulator :class:`~fleetguard.sim.profiles.DeviceModel`
from the outside: events change the model's state between reports (a reboot, a move), and
each report the model makes is adjusted before it is returned (more or less traffic, CPU,
a download's connection). Counters stay counters: what a variation adds accumulates since
boot, so the platform's differences between reports see it as the period's traffic.

Variations (one per device, each from its own seeded schedule):

- ``normal``: the profile as it is.
- ``diurnal``: traffic and CPU follow the time of day, from 0.4x at 02:00 to 1.6x at 14:00.
- ``firmware_update``: once a day, an image (8 MB on a sensor, 32 MB on a gateway, 48 MB
  on a camera) is downloaded at 400 KB/s over HTTPS from the host the device already talks
  to, installed (CPU at 55-75 % for about a minute), and the device reboots into it.
- ``reboots``: a power cycle every 3 to 9 hours (new boot id, counters from zero).
- ``moved_network``: once, the device is unplugged, carried to another site and plugged in:
  a reboot, an address in another network behind another router, and (a gateway) its
  field devices at their new addresses. Where the device reaches out to on the internet
  is unchanged.

Not modelled: new binaries after a firmware update (the simulator reports no executables
of its own firmware), DNS and NTP traffic to the new network's router (the simulator
reports TCP connections only).
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from fleetguard.protocol import Connection, InterfaceCounters, TelemetryReport, TransportProto
from fleetguard.sim.profiles import DeviceModel, Profile

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
DIURNAL_SWING = 0.6  # traffic and CPU from 1 - swing to 1 + swing of the profile's
DIURNAL_PEAK_HOUR = 14
UPDATE_RATE = 400_000  # bytes per second
UPDATE_PORT = 443
INSTALL_MS = 60_000
IMAGE_BYTES = {Profile.CAMERA: 48 << 20, Profile.SENSOR: 8 << 20, Profile.GATEWAY: 32 << 20}


class Variation(StrEnum):
    NORMAL = "normal"
    DIURNAL = "diurnal"
    FIRMWARE_UPDATE = "firmware_update"
    REBOOTS = "reboots"
    MOVED_NETWORK = "moved_network"


def diurnal_factor(at_ms: int) -> float:
    """How much of its usual traffic and CPU a device shows at this time of day (UTC)."""
    hour = (at_ms % DAY_MS) / HOUR_MS
    return 1 + DIURNAL_SWING * math.cos(2 * math.pi * (hour - DIURNAL_PEAK_HOUR) / 24)


@dataclass(frozen=True, slots=True)
class _Download:
    start_ms: int
    end_ms: int

    def overlap_s(self, begin_ms: int, end_ms: int) -> float:
        return max(min(end_ms, self.end_ms) - max(begin_ms, self.start_ms), 0) / 1000


@dataclass(slots=True)
class BenignDevice:
    """A simulated device doing one kind of benign variation; :meth:`report` as the model's."""

    model: DeviceModel
    variation: Variation
    until_ms: int  # the end of the run: events are planned up to it
    reboots_ms: list[int] = field(default_factory=list)
    downloads: list[_Download] = field(default_factory=list)
    move_ms: int | None = None
    # What the variation added since boot: bytes in, bytes out, packets in, packets out.
    extra: list[float] = field(default_factory=lambda: [0.0] * 4)
    previous: TelemetryReport | None = None  # the model's own last report (unadjusted)
    reboots: int = 0

    def __post_init__(self) -> None:
        rng, start = self.model.rng, self.model.now_ms
        if self.variation is Variation.REBOOTS:
            at = start + rng.randrange(3 * HOUR_MS, 9 * HOUR_MS)
            while at < self.until_ms:
                self.reboots_ms.append(at)
                at += rng.randrange(3 * HOUR_MS, 9 * HOUR_MS)
        elif self.variation is Variation.FIRMWARE_UPDATE:
            seconds = IMAGE_BYTES[self.model.profile] / UPDATE_RATE
            at = start + rng.randrange(HOUR_MS, DAY_MS)
            while at < self.until_ms:
                end = at + int(seconds * 1000)
                self.downloads.append(_Download(at, end))
                self.reboots_ms.append(end + INSTALL_MS)
                at += DAY_MS
        elif self.variation is Variation.MOVED_NETWORK:
            self.move_ms = start + int((self.until_ms - start) * rng.uniform(0.3, 0.7))
            self.reboots_ms.append(self.move_ms)

    @classmethod
    def create(cls, variation: Variation, profile: Profile, *, index: int, seed: int,
               start_ms: int, until_ms: int) -> BenignDevice:
        model = DeviceModel(index=index, profile=profile,
                            rng=random.Random(seed), now_ms=start_ms)  # noqa: S311
        return cls(model, variation, until_ms)

    def report(self, now_ms: int) -> TelemetryReport:
        begin_ms = self.model.last_ms
        for at in [t for t in self.reboots_ms if begin_ms < t <= now_ms]:
            self._reboot(at)
            if at == self.move_ms:
                self._move()
        raw = self.model.report(now_ms)
        if self.previous is not None and self.previous.boot_id != raw.boot_id:
            self.extra = [0.0] * 4
        deltas = _interface_deltas(self.previous, raw)
        self.previous = raw
        factor, cpu = 1.0, raw.cpu_percent
        if self.variation is Variation.DIURNAL:
            factor = diurnal_factor(now_ms)
            cpu = min(cpu * factor, 100.0)
        for i, delta in enumerate(deltas):
            self.extra[i] += delta * (factor - 1)
        connections = list(raw.connections)
        for download in self.downloads:
            seconds = download.overlap_s(raw.period_start_ms, now_ms)
            if seconds > 0:
                self._download(seconds)
            if download.start_ms <= now_ms < download.end_ms:
                connections.append(self._update_connection())
            elif download.end_ms <= now_ms < download.end_ms + INSTALL_MS:
                cpu = max(cpu, self.model.rng.uniform(55.0, 75.0))
        return _adjusted(raw, self.extra, cpu, connections, factor)

    def _download(self, seconds: float) -> None:
        received = UPDATE_RATE * seconds
        self.extra[0] += received
        self.extra[1] += received * 0.02  # acknowledgements
        self.extra[2] += received / 1400
        self.extra[3] += received / 1400 / 2

    def _update_connection(self) -> Connection:
        model = self.model
        return Connection(proto=TransportProto.TCP, local_address=model.address,
                          local_port=model.rng.randint(32768, 60999),
                          remote_address=model.upstream[0], remote_port=UPDATE_PORT,
                          process="fg-agent")

    def _reboot(self, at_ms: int) -> None:
        """A power cycle at ``at_ms``: a new boot, every counter from zero."""
        model = self.model
        model.boot_id = str(uuid.UUID(int=model.rng.getrandbits(128), version=4))
        model.boot_ms = at_ms - model.rng.randrange(15_000, 45_000)  # booted before it reports
        model.eth = [0.0] * len(model.eth)
        model.net = [0.0] * len(model.net)
        model.last_ms = at_ms
        self.extra = [0.0] * 4
        self.reboots += 1

    def _move(self) -> None:
        """Another site: another network (and router), the same devices around a gateway."""
        model = self.model
        site = 16 + model.index % 16
        model.address = f"172.{site}.{model.index // 250 % 256}.{model.index % 250 + 2}"
        base = model.address.rsplit(".", 1)[0]
        model.peers = [f"{base}.{peer.rsplit('.', 1)[1]}" for peer in model.peers]


def _interface_deltas(previous: TelemetryReport | None,
                      current: TelemetryReport) -> tuple[float, float, float, float]:
    if previous is None or previous.boot_id != current.boot_id:
        return (0.0, 0.0, 0.0, 0.0)
    before, now = previous.interfaces[0], current.interfaces[0]
    return (float(now.bytes_in - before.bytes_in), float(now.bytes_out - before.bytes_out),
            float(now.packets_in - before.packets_in),
            float(now.packets_out - before.packets_out))


def _adjusted(raw: TelemetryReport, extra: list[float], cpu: float,
              connections: list[Connection], load: float) -> TelemetryReport:
    """``raw`` with the variation's counters, CPU (machine, and each process's by ``load``)
    and connections."""
    eth = raw.interfaces[0]
    interface = InterfaceCounters(
        name=eth.name, bytes_in=eth.bytes_in + int(extra[0]),
        bytes_out=eth.bytes_out + int(extra[1]), packets_in=eth.packets_in + int(extra[2]),
        packets_out=eth.packets_out + int(extra[3]))
    processes = raw.processes
    if processes is not None and load != 1.0:
        processes = [p.model_copy(update={"cpu_seconds": p.cpu_seconds * load})
                     for p in processes]
    return raw.model_copy(update={
        "interfaces": [interface, *raw.interfaces[1:]], "cpu_percent": cpu,
        "connections": connections, "processes": processes})


__all__ = ["BenignDevice", "Variation", "diurnal_factor"]
