"""Alarms for the dashboard's tests, raised the real way: reports submitted to telemetry
ingestion, whose report hook hands each stored one to the detection service, whose shipped
rules open the alarm."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fleetguard.core.clock import now_ms
from fleetguard.detect.learned import learned_detectors
from fleetguard.detect.service import DetectionConfig, DetectionService
from fleetguard.protocol import TelemetryReport, encode_message
from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from tests.detect.support import MINUTE_MS, executable, listening, net, outbound, report

SCAN_FAILURES_PER_S = 155  # Mirai-style: refused connections a second


@dataclass
class ReportingDevice:
    """A device that reports every minute, ending now; what it does is set between reports."""

    device_id: str
    at_ms: int = field(default_factory=lambda: now_ms() - 10 * MINUTE_MS)
    failures: int = 0
    scanning: bool = False
    listeners: list[int] = field(default_factory=lambda: [22])
    executables: list[str] = field(default_factory=list)  # run since the previous report
    cpu: float = 10.0

    def next(self) -> TelemetryReport:
        self.at_ms += MINUTE_MS
        if self.scanning:
            self.failures += SCAN_FAILURES_PER_S * 60
        return report(self.at_ms, cpu=self.cpu, counters=net(tcp_attempt_fails=self.failures),
                      listeners=[listening(p) for p in self.listeners],
                      connections=[outbound("192.0.2.10", 443)],
                      executables=[executable(path) for path in self.executables])


@dataclass
class Pipeline:
    ingest: IngestService
    detection: DetectionService

    def send(self, device: ReportingDevice, reports: int = 1) -> None:
        """The device's next reports, through ingestion and detection, all settled."""
        for _ in range(reports):
            body = encode_message(device.next(), "application/json")
            self.ingest.submit_telemetry(device.device_id, body, "application/json")
        assert self.ingest.flush(30)
        assert self.detection.flush(30)

    def scan(self, device: ReportingDevice) -> None:
        """A normal report, then one of a port scan: a high scanning alarm opens."""
        self.send(device)
        device.scanning = True
        self.send(device)
        device.scanning = False

    def drop(self, device: ReportingDevice, path: str = "/tmp/.x/mirai") -> None:
        """A normal report, then one that ran a binary from /tmp: an executable alarm."""
        self.send(device)
        device.executables = [path]
        self.send(device)
        device.executables = []

    def mine(self, device: ReportingDevice) -> None:
        """A normal report, then two with the CPU pinned: a medium miner alarm."""
        self.send(device)
        device.cpu = 97.0
        self.send(device, 2)
        device.cpu = 10.0


    def learn_then_spike(self, device: ReportingDevice, normal: int = 30) -> None:
        """``normal`` reports with the CPU near 10 %, then three at 70 %: the device's own
        learned baseline flags it (the miner rule waits for 90 %)."""
        jitter = random.Random(7)
        for _ in range(normal):
            device.cpu = 10 + jitter.uniform(-2, 2)
            self.send(device)
        device.cpu = 70.0
        self.send(device, 3)
        device.cpu = 10.0


@contextmanager
def detection_pipeline(db: Database, *, learned: bool = False) -> Iterator[Pipeline]:
    """Ingestion feeding detection (the shipped rules; and the learned detectors if asked)."""
    detection = DetectionService(db, config=DetectionConfig(learning_window_s=0,
                                                            persist_every_s=3600),
                                 detectors=list(learned_detectors()) if learned else [])
    detection.start()
    ingest = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01,
                           on_report=detection.observe)
    ingest.start()
    try:
        yield Pipeline(ingest, detection)
    finally:
        ingest.stop()
        detection.stop()
