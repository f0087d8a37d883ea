"""Detection rate and memory per device: our features and rules against River's HalfSpaceTrees.

fleetguard's figure is the pure detection core per report: ``extract_features`` then
``evaluate`` with ``default_ruleset()``, carrying each device's two states. The peer is
River's ``anomaly.HalfSpaceTrees`` behind ``preprocessing.MinMaxScaler`` (the pipeline
River's documentation gives), doing ``score_one`` then ``learn_one`` per report on the
same numeric features: every value of our ``FeatureVector`` (rates, gauges and novelty
counts; 23 in all), an absent one as 0. The peer is measured twice: one model per device
(as a per-device baseline would be kept) and one model shared by the whole fleet.

    PYTHONPATH=src python benchmarks/bench_detect.py [--devices 500] [--reports 20]

The stream is the simulator's fleet mix (``sim.fleet.PROFILE_MIX``: cameras, sensors,
gateways), every device reporting once a minute, a few devices attacked from the first
timed minute on. Each device first reports ``--window`` times untimed (River's default
window of 250): a HalfSpaceTrees model scores 0 without walking its trees until its first
window is full, so a model that has not seen a window would be measured doing nothing;
our rules are past their 30-minute learning time too. The timed reports, and the peer's
feature dicts, are made before the clock starts. Everything runs on one pinned CPU, in
one process, garbage collection on; each side is timed once over the same reports.

Memory is ``tracemalloc`` over ``--memory-devices`` devices taken through the same warm-up
and stream, divided by their number: our feature state and rule state per device, and
one River pipeline (scaler and trees) per device. Sizing (issue 14): 100,000 reports/s
per core, rules and models together; the last line says how far ours is from it.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from river import anomaly, compose, preprocessing

from fleetguard.detect import (
    DeviceFeatureState,
    EvaluationContext,
    Feature,
    FeatureVector,
    RuleSet,
    RuleState,
    default_ruleset,
    evaluate,
    extract_features,
)
from fleetguard.protocol import TelemetryReport
from fleetguard.sim import ActiveScenario, DeviceModel, Scenario
from fleetguard.sim.fleet import pick_profile
from fleetguard.sim.profiles import scenario_target

TARGET_PER_SECOND = 100_000
T0 = 1_800_000_000_000
MINUTE_MS = 60_000
LEARNING_MS = 30 * MINUTE_MS
FEATURES = tuple(Feature)


def _pin_to_one_cpu() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _river_model() -> compose.Pipeline:
    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)


def _numeric(features: FeatureVector) -> dict[str, float]:
    values = features.values
    return {f.value: values.get(f, 0.0) for f in FEATURES}


@dataclass
class Ours:
    """One device's detection states, as the platform would keep them between reports."""

    context: EvaluationContext
    feature_state: DeviceFeatureState | None = None
    rule_state: RuleState | None = None


def _fleet(devices: int, seed: int) -> list[DeviceModel]:
    rng = random.Random(seed)
    return [DeviceModel(index=i, profile=pick_profile(i, rng), rng=random.Random(seed * 1_000 + i),
                        now_ms=T0) for i in range(devices)]


def _attack(fleet: list[DeviceModel], attacked: int, start_ms: int, seed: int) -> list[int]:
    """``attacked`` devices, each with a scenario of its own, from ``start_ms`` on."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(fleet)), min(attacked, len(fleet))))
    scenarios = list(Scenario)
    for n, index in enumerate(chosen):
        scenario = scenarios[n % len(scenarios)]
        target, port = scenario_target(scenario, fleet[index])
        fleet[index].add_scenario(ActiveScenario(scenario, start_ms + 1 + rng.randrange(MINUTE_MS),
                                                 start_ms + 600 * MINUTE_MS, target, port))
    return chosen


def _rounds(fleet: list[DeviceModel], first: int, count: int) -> Iterator[tuple[int, TelemetryReport]]:
    """Every device's report of each minute ``first .. first + count - 1``, in time order."""
    for minute in range(first, first + count):
        now_ms = T0 + minute * MINUTE_MS
        for index, device in enumerate(fleet):
            yield index, device.report(now_ms)


def _ours_step(ruleset: RuleSet, state: Ours, report: TelemetryReport) -> FeatureVector:
    features, state.feature_state = extract_features(state.feature_state, report)
    _, state.rule_state = evaluate(ruleset, state.rule_state, features, state.context)
    return features


def _warm_up(fleet: list[DeviceModel], window: int, ruleset: RuleSet,
             models: list[compose.Pipeline] | None = None,
             last: deque[dict[str, float]] | None = None) -> list[Ours]:
    """Every device through ``window`` untimed reports: our states, River's models, and
    the fleet's last reports' features in ``last`` (for the shared model)."""
    context = EvaluationContext(learning_until_ms=T0 + MINUTE_MS + LEARNING_MS)
    ours = [Ours(context) for _ in fleet]
    for index, report in _rounds(fleet, 1, window):
        features = _ours_step(ruleset, ours[index], report)
        if models is not None and last is not None:
            x = _numeric(features)
            models[index].learn_one(x)
            last.append(x)
    return ours


def _time(loop: Callable[[], int]) -> float:
    gc.collect()
    start = time.perf_counter()
    count = loop()
    return count / (time.perf_counter() - start)


def _allocated(build: Callable[[], object]) -> tuple[int, object]:
    """Bytes still held by what ``build`` returns (everything else it made is freed)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, kept
    finally:
        tracemalloc.stop()


def _memory(args: argparse.Namespace, ruleset: RuleSet) -> tuple[float, float]:
    """Bytes per device: our two states, and one River pipeline, after the same stream."""
    reports = args.window + args.reports

    def simulated() -> list[Ours]:
        """What simulating the devices alone leaves allocated (their models' own state)."""
        for _ in _rounds(fleet, 1, reports):
            pass
        return []

    def ours() -> list[tuple[DeviceFeatureState | None, RuleState | None]]:
        states = _warm_up(fleet, reports, ruleset)
        return [(s.feature_state, s.rule_state) for s in states]

    fleet = _attacked_fleet(args)
    simulation_bytes, _ = _allocated(simulated)
    fleet = _attacked_fleet(args)  # the same devices from the start
    ours_bytes, _ = _allocated(ours)
    ours_bytes -= simulation_bytes
    fleet = _attacked_fleet(args)
    features = [[_numeric(v) for v in vectors] for vectors in _vectors(fleet, args, ruleset)]

    def river() -> list[compose.Pipeline]:
        models = [_river_model() for _ in fleet]
        for model, xs in zip(models, features, strict=True):
            for x in xs:
                model.learn_one(x)
        return models

    river_bytes, _ = _allocated(river)
    return ours_bytes / len(fleet), river_bytes / len(fleet)


def _attacked_fleet(args: argparse.Namespace) -> list[DeviceModel]:
    """The devices measured for memory, attacked in the same share as the timed fleet."""
    fleet = _fleet(args.memory_devices, args.seed + 1)
    _attack(fleet, max(1, args.attacked * len(fleet) // args.devices),
            T0 + (args.window + 1) * MINUTE_MS, args.seed + 1)
    return fleet


def _vectors(fleet: list[DeviceModel], args: argparse.Namespace,
             ruleset: RuleSet) -> list[list[FeatureVector]]:
    """Each device's feature vectors over warm-up and stream (for the memory of River's)."""
    states = [Ours(EvaluationContext()) for _ in fleet]
    vectors: list[list[FeatureVector]] = [[] for _ in fleet]
    for index, report in _rounds(fleet, 1, args.window + args.reports):
        vectors[index].append(_ours_step(ruleset, states[index], report))
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--reports", type=int, default=20, help="timed reports per device")
    parser.add_argument("--window", type=int, default=250,
                        help="untimed warm-up reports per device (River's window size)")
    parser.add_argument("--attacked", type=int, default=7, help="devices attacked")
    parser.add_argument("--memory-devices", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"bench_detect: {_pin_to_one_cpu()}; {args.devices} devices, {args.window} warm-up "
          f"and {args.reports} timed reports each, {args.attacked} attacked")
    ruleset = default_ruleset()

    started = time.perf_counter()
    fleet = _fleet(args.devices, args.seed)
    per_device = [_river_model() for _ in fleet]
    last: deque[dict[str, float]] = deque(maxlen=args.window)
    ours = _warm_up(fleet, args.window, ruleset, per_device, last)
    shared = _river_model()
    for x in last:
        shared.learn_one(x)  # past its first window, on the fleet's last warm-up reports
    first_timed = args.window + 1
    attacked = _attack(fleet, args.attacked, T0 + first_timed * MINUTE_MS, args.seed)
    stream = list(_rounds(fleet, first_timed, args.reports))
    xs = [_numeric(v) for v in _peek(ours, ruleset, stream)]
    print(f"set-up (simulation and warm-up, untimed): {time.perf_counter() - started:.1f} s; "
          f"{len(stream):,} timed reports, {len(FEATURES)} numeric features each")

    verdicts: dict[int, int] = {}

    def ours_loop() -> int:
        for index, report in stream:
            state = ours[index]
            features, state.feature_state = extract_features(state.feature_state, report)
            found, state.rule_state = evaluate(ruleset, state.rule_state, features, state.context)
            if found:
                verdicts[index] = verdicts.get(index, 0) + len(found)
        return len(stream)

    def per_device_loop() -> int:
        for (index, _), x in zip(stream, xs, strict=True):
            model = per_device[index]
            model.score_one(x)
            model.learn_one(x)
        return len(xs)

    def shared_loop() -> int:
        for x in xs:
            shared.score_one(x)
            shared.learn_one(x)
        return len(xs)

    ours_rate = _time(ours_loop)
    per_device_rate = _time(per_device_loop)
    shared_rate = _time(shared_loop)
    flagged = sorted(verdicts)
    print(f"verdicts: {sum(verdicts.values())} on {len(flagged)} devices; attacked {attacked}, "
          f"of them flagged {sorted(set(attacked) & set(flagged))}")

    ours_bytes, river_bytes = _memory(args, ruleset)
    print(f"{'per report, one core':58} {'reports/s':>10} {'us/report':>10}")
    rows = [("ours: extract_features + evaluate, default rules", ours_rate),
            ("River: MinMaxScaler | HalfSpaceTrees, one per device", per_device_rate),
            ("River: MinMaxScaler | HalfSpaceTrees, one shared", shared_rate)]
    for label, rate in rows:
        print(f"{label:58} {rate:10,.0f} {1e6 / rate:10.1f}")
    print(f"ratio ours / River per device: {ours_rate / per_device_rate:.2f}; "
          f"ours / River shared: {ours_rate / shared_rate:.2f}")
    print(f"ratio ours / target {TARGET_PER_SECOND:,} reports/s/core: "
          f"{ours_rate / TARGET_PER_SECOND:.3f}; River per device / target: "
          f"{per_device_rate / TARGET_PER_SECOND:.3f}")
    print(f"memory per device ({args.memory_devices} devices, tracemalloc): ours (feature and "
          f"rule state) {ours_bytes:,.0f} B; River pipeline {river_bytes:,.0f} B; ratio "
          f"{ours_bytes / river_bytes:.3f}")
    both = ours_rate * per_device_rate / (ours_rate + per_device_rate)
    print(f"rules and a per-device HalfSpaceTrees together, one core: {both:,.0f} reports/s "
          f"({both / TARGET_PER_SECOND:.3f} of target; "
          f"{math.ceil(TARGET_PER_SECOND / both)} cores for it)")


def _peek(ours: list[Ours], ruleset: RuleSet, stream: list[tuple[int, TelemetryReport]]
          ) -> Iterator[FeatureVector]:
    """The stream's feature vectors from the warmed states, leaving them as they are."""
    states = {i: Ours(s.context, s.feature_state, s.rule_state) for i, s in enumerate(ours)}
    for index, report in stream:
        yield _ours_step(ruleset, states[index], report)


if __name__ == "__main__":
    main()
