"""Reports for the detect tests: hand-made ones, and the simulator's devices driven directly."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fleetguard.detect import (
    DeviceFeatureState,
    EvaluationContext,
    FeatureVector,
    RuleSet,
    RuleState,
    Verdict,
    evaluate,
    extract_features,
)
from fleetguard.protocol import (
    Connection,
    DestinationSeen,
    InterfaceCounters,
    ListenerOpened,
    ListeningSocket,
    NetworkCounters,
    NewExecutable,
    ProcessUsage,
    TelemetryReport,
    TransportProto,
)
from fleetguard.sim import ActiveScenario, DeviceModel, Profile

BOOT = "0b0b0b0b-0000-4000-8000-000000000001"
OTHER_BOOT = "0b0b0b0b-0000-4000-8000-000000000002"
T0 = 1_800_000_000_000
MINUTE_MS = 60_000
TCP = TransportProto.TCP
DEVICE_ADDRESS = "10.0.0.5"


def net(**counters: int) -> NetworkCounters:
    fields = dict.fromkeys(NetworkCounters.model_fields, 0)
    return NetworkCounters(**(fields | counters))


def eth(bytes_in: int = 0, bytes_out: int = 0, packets_in: int = 0, packets_out: int = 0,
        name: str = "eth0") -> InterfaceCounters:
    return InterfaceCounters(name=name, bytes_in=bytes_in, bytes_out=bytes_out,
                             packets_in=packets_in, packets_out=packets_out)


def outbound(address: str, port: int, local_port: int = 40000) -> Connection:
    return Connection(proto=TCP, local_address=DEVICE_ADDRESS, local_port=local_port,
                      remote_address=address, remote_port=port)


def listening(port: int) -> ListeningSocket:
    return ListeningSocket(proto=TCP, address="0.0.0.0", port=port)


def executable(path: str, sha: str | None = None) -> NewExecutable:
    return NewExecutable(path=path, sha256=sha)


def seen(address: str, port: int, samples: int = 1, connections: int = 1) -> DestinationSeen:
    """A destination a sampling agent saw during the period."""
    return DestinationSeen(proto=TCP, address=address, port=port, samples=samples,
                           connections=connections)


def opened(port: int, at_ms: int = T0, closed: bool = True) -> ListenerOpened:
    """A listener a sampling agent saw opened during the period (closed again by default)."""
    return ListenerOpened(proto=TCP, address="0.0.0.0", port=port, opened_at_ms=at_ms,
                          closed=closed)


def process(name: str, cpu_seconds: float, pid: int = 100) -> ProcessUsage:
    return ProcessUsage(pid=pid, name=name, exe=f"/usr/bin/{name}", cpu_seconds=cpu_seconds)


def report(at_ms: int = T0, *, boot_id: str = BOOT, period_ms: int = MINUTE_MS,
           cpu: float = 10.0, interfaces: Sequence[InterfaceCounters] = (),
           counters: NetworkCounters | None = None,
           connections: Sequence[Connection] = (), listeners: Sequence[ListeningSocket] = (),
           executables: Sequence[NewExecutable] = (), auth_failures: int | None = 0,
           seq: int | None = None, destinations_seen: Sequence[DestinationSeen] | None = None,
           listeners_opened: Sequence[ListenerOpened] | None = None,
           processes: Sequence[ProcessUsage] | None = None) -> TelemetryReport:
    """A report; the accumulated fields (a sampling agent's) are absent unless given."""
    return TelemetryReport(
        seq=at_ms // 1000 if seq is None else seq, collected_at_ms=at_ms, period_start_ms=max(at_ms - period_ms, 0),
        agent_version="test", boot_id=boot_id, uptime_s=1000.0, cpu_percent=cpu,
        load_1=0.1, load_5=0.1, load_15=0.1, memory_total_bytes=1 << 30,
        memory_available_bytes=1 << 29, process_count=40, interfaces=list(interfaces),
        net=counters, connections=list(connections), listening=list(listeners),
        new_executables=list(executables), auth_failures=auth_failures,
        auth_source=None if auth_failures is None else "/var/log/auth.log",
        samples=None if destinations_seen is None and processes is None else period_ms // 1000,
        destinations_seen=None if destinations_seen is None else list(destinations_seen),
        listeners_opened=None if listeners_opened is None else list(listeners_opened),
        processes=None if processes is None else list(processes),
    )


def features_of(reports: Iterable[TelemetryReport]) -> list[FeatureVector]:
    state: DeviceFeatureState | None = None
    vectors = []
    for r in reports:
        vector, state = extract_features(state, r)
        vectors.append(vector)
    return vectors


@dataclass
class Watched:
    """A simulated device reporting every minute, its reports run through detection."""

    model: DeviceModel
    ruleset: RuleSet
    learning_ms: int = 30 * MINUTE_MS
    now_ms: int = T0
    feature_state: DeviceFeatureState | None = None
    rule_state: RuleState | None = None
    first_report_ms: int | None = None
    verdicts: list[list[Verdict]] = field(default_factory=list)
    last_report: TelemetryReport | None = None

    @classmethod
    def device(cls, profile: Profile, ruleset: RuleSet, seed: int = 7,
               index: int = 3) -> Watched:
        model = DeviceModel(index=index, profile=profile,
                            rng=random.Random(seed), now_ms=T0)
        return cls(model, ruleset)

    def step(self, interval_ms: int = MINUTE_MS) -> list[Verdict]:
        self.now_ms += interval_ms
        r = self.last_report = self.model.report(self.now_ms)
        if self.first_report_ms is None:
            self.first_report_ms = r.collected_at_ms
        features, self.feature_state = extract_features(self.feature_state, r)
        context = EvaluationContext(learning_until_ms=self.first_report_ms + self.learning_ms)
        verdicts, self.rule_state = evaluate(self.ruleset, self.rule_state, features, context)
        self.verdicts.append(verdicts)
        return verdicts

    def run(self, reports: int) -> list[Verdict]:
        return [v for _ in range(reports) for v in self.step()]

    def reboot(self) -> None:
        """What a power cycle does to the device's report: a new boot, counters from zero."""
        model = self.model
        model.boot_id = str(uuid.UUID(int=model.rng.getrandbits(128), version=4))
        model.boot_ms = self.now_ms
        model.eth = [0.0] * len(model.eth)
        model.net = [0.0] * len(model.net)

    def attack(self, active: ActiveScenario) -> None:
        self.model.add_scenario(active)
