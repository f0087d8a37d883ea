"""A simulated cohort run through the learned side of detection (baselines, peers, model).

Devices of one profile report every minute; each report becomes features (as ingestion
makes them), then each device's baseline, the cohort's peer window and the cohort's
Half-Space Trees judge it. ``diurnal=True`` scales each device's traffic, connection
counters and CPU by a day-long cycle between half and one and a half times the profile's
(a 3x swing, peaking mid-afternoon), by rewriting the simulator's reports: the sim has no
time of day of its own.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field

from fleetguard.detect import DeviceFeatureState, FeatureVector, Verdict, extract_features
from fleetguard.detect.baselines import BaselineSettings, BaselineState, update_baseline
from fleetguard.detect.hst import HalfSpaceTrees, HstSettings, update_hst
from fleetguard.detect.peers import (
    PeerExemptions,
    PeerSettings,
    PeerWindow,
    observe_peer,
    peer_verdicts,
)
from fleetguard.protocol import InterfaceCounters, NetworkCounters, TelemetryReport
from fleetguard.sim import ActiveScenario, DeviceModel, Profile, Scenario
from fleetguard.sim.profiles import scenario_target

from .support import MINUTE_MS, T0

DAY_MS = 24 * 60 * MINUTE_MS
COHORT = "camera/default"


def diurnal_factor(at_ms: int) -> float:
    """0.5 at 03:00, 1.5 at 15:00 (UTC), a sine between."""
    return 1.0 + 0.5 * math.sin(2 * math.pi * ((at_ms % DAY_MS) / DAY_MS - 9 / 24))


@dataclass
class _Diurnal:
    """Rewrites a device's cumulative counters so that each period's growth is scaled."""

    boot_id: str = ""
    raw: list[int] = field(default_factory=list)
    scaled: list[float] = field(default_factory=list)

    def apply(self, report: TelemetryReport) -> TelemetryReport:
        assert report.net is not None
        raw = [*_interface_values(report), *report.net.model_dump().values()]
        factor = diurnal_factor(report.collected_at_ms)
        if report.boot_id != self.boot_id or len(raw) != len(self.raw):
            self.boot_id, self.scaled = report.boot_id, [float(v) for v in raw]
        else:
            self.scaled = [s + max(r - p, 0) * factor
                           for s, r, p in zip(self.scaled, raw, self.raw, strict=True)]
        self.raw = raw
        values = [int(v) for v in self.scaled]
        eth = report.interfaces[0]
        interface = InterfaceCounters(name=eth.name, bytes_in=values[0], bytes_out=values[1],
                                      packets_in=values[2], packets_out=values[3])
        net = NetworkCounters(**dict(zip(report.net.model_dump(), values[4:], strict=True)))
        return report.model_copy(update={
            "interfaces": [interface], "net": net,
            "cpu_percent": min(report.cpu_percent * factor, 100.0)})


def _interface_values(report: TelemetryReport) -> list[int]:
    eth = report.interfaces[0]
    return [eth.bytes_in, eth.bytes_out, eth.packets_in, eth.packets_out]


@dataclass
class Member:
    model: DeviceModel
    device_id: str
    feature_state: DeviceFeatureState | None = None
    baseline: BaselineState | None = None
    diurnal: _Diurnal | None = None
    last: FeatureVector | None = None

    def features(self, now_ms: int) -> FeatureVector:
        report = self.model.report(now_ms)
        if self.diurnal is not None:
            report = self.diurnal.apply(report)
        self.last, self.feature_state = extract_features(self.feature_state, report)
        return self.last


@dataclass
class Verdicts:
    """One round's verdicts of one device, by kind."""

    baseline: list[Verdict] = field(default_factory=list)
    peer: list[Verdict] = field(default_factory=list)
    model: list[Verdict] = field(default_factory=list)

    def all(self) -> list[Verdict]:
        return [*self.baseline, *self.peer, *self.model]


@dataclass
class Cohort:
    """Simulated devices of one profile, their learned states, reporting every minute."""

    profile: Profile
    members: list[Member]
    baseline_settings: BaselineSettings = field(default_factory=BaselineSettings)
    window: PeerWindow = field(default_factory=PeerWindow)
    hst: HalfSpaceTrees = field(default_factory=HalfSpaceTrees)
    exemptions: PeerExemptions = field(default_factory=PeerExemptions)
    now_ms: int = T0
    diurnal: bool = False

    @classmethod
    def of(cls, profile: Profile, devices: int, *, seed: int = 1, diurnal: bool = False,
           peer_settings: PeerSettings | None = None,
           hst_settings: HstSettings | None = None) -> Cohort:
        cohort = cls(profile, [], window=PeerWindow(peer_settings),
                     hst=HalfSpaceTrees(hst_settings), diurnal=diurnal)
        for _ in range(devices):
            cohort.join(seed)
        return cohort

    def join(self, seed: int = 1) -> Member:
        index = len(self.members)
        model = DeviceModel(index=index, profile=self.profile,
                            rng=random.Random(seed * 1_000 + index), now_ms=self.now_ms)
        member = Member(model, f"device-{index}",
                        diurnal=_Diurnal() if self.diurnal else None)
        self.members.append(member)
        return member

    def step(self) -> list[Verdicts]:
        """Every device reports once; each one's verdicts, in member order."""
        self.now_ms += MINUTE_MS
        vectors = [m.features(self.now_ms) for m in self.members]
        found = [Verdicts() for _ in self.members]
        for member, vector in zip(self.members, vectors, strict=True):
            observe_peer(self.window, COHORT, member.device_id, vector)
        for member, vector, verdicts in zip(self.members, vectors, found, strict=True):
            verdicts.baseline, member.baseline = update_baseline(
                member.baseline, vector, self.baseline_settings)
            verdicts.peer = peer_verdicts(self.window, COHORT, member.device_id, vector,
                                          self.exemptions)
        for verdicts, model_verdicts in zip(found, update_hst(self.hst, vectors), strict=True):
            verdicts.model = model_verdicts
        return found

    def run(self, rounds: int) -> list[list[Verdicts]]:
        return [self.step() for _ in range(rounds)]

    def attack(self, member: Member, scenario: Scenario, offset_ms: int) -> None:
        """``scenario`` on ``member`` from ``offset_ms`` after the last report on."""
        target, port = scenario_target(scenario, member.model)
        start = self.now_ms + offset_ms
        member.model.add_scenario(ActiveScenario(scenario, start, start + 60 * MINUTE_MS,
                                                 target, port))

    def reboot(self, member: Member) -> None:
        model = member.model
        model.boot_id = str(uuid.UUID(int=model.rng.getrandbits(128), version=4))
        model.boot_ms = self.now_ms
        model.eth = [0.0] * len(model.eth)
        model.net = [0.0] * len(model.net)


def summaries(rounds: list[list[Verdicts]]) -> list[str]:
    return [v.summary for row in rounds for device in row for v in device.all()]
