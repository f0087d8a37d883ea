"""Detection rate and memory per device: our features and rules against River's HalfSpaceTrees.

fleetguard's figure is the pure detection core per report: ``extract_features`` then
``evaluate`` with ``default_ruleset()``, carrying each device's two states. The peer is
River's ``anomaly.HalfSpaceTrees`` behind ``preprocessing.MinMaxScaler`` (the pipeline
River's documentation gives), doing ``score_one`` then ``learn_one`` per report on the
same numeric features: every value of our ``FeatureVector`` (rates, gauges and novelty
counts; 23 in all), an absent one as 0. The peer is measured twice: one model per device
(as a per-device baseline would be kept) and one model shared by the whole fleet.

    PYTHONPATH=src python benchmarks/bench_detect.py [--devices 200] [--reports 20]

The stream is the simulator's fleet mix (``sim.fleet.PROFILE_MIX``: cameras, sensors,
gateways), every device reporting once a minute, a few devices attacked from the first
timed minute on. Each device first reports ``--window`` times untimed (River's default
window of 250): a HalfSpaceTrees model scores 0 without walking its trees until its first
window is full, so a model that has not seen a window would be measured doing nothing;
our rules are past their 30-minute learning time too. The timed reports, and the peer's
feature dicts, are made before the clock starts. Everything runs on one pinned CPU, in
one process, garbage collection on; each side is timed once over the same reports, in
reports per second of the process's CPU time (``time.process_time``).

The learned side (``detect.baselines``, ``detect.peers``, ``detect.hst``) runs on the
batch-vectorised path: each minute's reports of the whole fleet are one batch; features
and rules per report as above, then one matrix of feature values, every device's baseline
judged and updated in one call (``update_baseline_rows``), and per cohort (the simulator's
profile: devices of one model) its peer window and its Half-Space Trees in one call each.
Timed three ways on the same reports: everything together (features + rules + baselines +
peers + HST), the learned side alone (on the same feature vectors, made before the clock),
and the learned side one report at a time (the per-device functions; a HST batch of one).

Memory is ``tracemalloc`` over ``--memory-devices`` devices taken through the same warm-up
and stream, divided by their number: our feature state and rule state per device, and
one River pipeline (scaler and trees) per device; then each learned model: a device's
``BaselineState``, the peer window and the cohort's HST per device of the timed fleet.
Sizing (issue 14): 100,000 reports/s per core, rules and models together; the lines
marked "ratio" say how far each path is from it and from River.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import random
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
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
from fleetguard.detect.baselines import (
    BaselineSettings,
    BaselineState,
    feature_matrix,
    new_table,
    update_baseline,
    update_baseline_rows,
)
from fleetguard.detect.hst import HalfSpaceTrees, update_hst_rows
from fleetguard.detect.peers import (
    PeerWindow,
    observe_peer,
    observe_peer_rows,
    peer_verdicts,
    peer_verdicts_rows,
)
from fleetguard.protocol import TelemetryReport
from fleetguard.sim import ActiveScenario, DeviceModel, Scenario
from fleetguard.sim.fleet import pick_profile
from fleetguard.sim.profiles import scenario_target

TARGET_PER_SECOND = 100_000
T0 = 1_800_000_000_000
MINUTE_MS = 60_000
LEARNING_MS = 30 * MINUTE_MS
# The learned side warms on the last reports of the warm-up only: baselines need 20, a
# cohort's HST one window (128 of its reports), peers none.
LEARNED_WARM_UP = 40
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


class Learned:
    """The fleet's learned states on the vectorised path: one bank of baselines, one peer
    window, one Half-Space Trees per cohort (the devices of one simulated profile)."""

    def __init__(self, fleet: list[DeviceModel]) -> None:
        self.settings = BaselineSettings()
        self.tables = new_table(len(fleet))
        self.reports = np.zeros(len(fleet), np.int64)
        self.every = np.arange(len(fleet))
        self.ids = [f"device-{d.index}" for d in fleet]
        names = sorted({d.profile.value for d in fleet})
        self.cohorts = {n: np.array([i for i, d in enumerate(fleet) if d.profile.value == n])
                        for n in names}
        self.cohort_ids = {n: [self.ids[i] for i in rows] for n, rows in self.cohorts.items()}
        self.window = PeerWindow()
        self.models = {n: HalfSpaceTrees() for n in names}

    def step(self, vectors: list[FeatureVector]) -> list[int]:
        """One minute's reports of every device, in fleet order: the devices flagged."""
        x = feature_matrix(vectors)
        at = np.fromiter((v.collected_at_ms for v in vectors), np.int64, len(vectors))
        at_ms = int(at.max())
        found = [i for i, _ in update_baseline_rows(self.tables, self.reports, self.every, x,
                                                     at, self.settings)]
        for name, rows in self.cohorts.items():
            xs, ids = x[rows], self.cohort_ids[name]
            observe_peer_rows(self.window, name, ids, xs, at_ms)
            found += [int(rows[i]) for i, _ in peer_verdicts_rows(self.window, name, ids, xs,
                                                                   at_ms)]
            found += [int(rows[i]) for i, _ in update_hst_rows(self.models[name], xs, at[rows])]
        return found


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


def _minute(report: TelemetryReport) -> int:
    """Which minute of the run a report is (the first report is minute 1)."""
    return (report.collected_at_ms - T0) // MINUTE_MS


def _warm_up(fleet: list[DeviceModel], window: int, ruleset: RuleSet,
             models: list[compose.Pipeline] | None = None,
             last: deque[dict[str, float]] | None = None,
             learned: Learned | None = None) -> list[Ours]:
    """Every device through ``window`` untimed reports: our states, River's models, the
    fleet's last reports' features in ``last`` (for the shared model), our learned ones."""
    context = EvaluationContext(learning_until_ms=T0 + MINUTE_MS + LEARNING_MS)
    ours = [Ours(context) for _ in fleet]
    round_vectors: list[FeatureVector] = []
    for index, report in _rounds(fleet, 1, window):
        features = _ours_step(ruleset, ours[index], report)
        if learned is not None and _minute(report) > window - LEARNED_WARM_UP:
            round_vectors.append(features)
            if index == len(fleet) - 1:
                learned.step(round_vectors)
                round_vectors = []
        if models is not None and last is not None:
            x = _numeric(features)
            models[index].learn_one(x)
            last.append(x)
    return ours


WALL_OVER_CPU: list[float] = []  # how much of the wall time the process ran: load


def _time(loop: Callable[[], int]) -> float:
    """Reports per second of the process's own CPU time: on the shared development
    machine, wall time would also measure the neighbours' runs (the wall-to-CPU ratio of
    each loop is printed; 1.0 on an idle machine, where the two agree)."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    count = loop()
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    WALL_OVER_CPU.append(wall / cpu)
    return count / cpu


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


def _memory(args: argparse.Namespace, ruleset: RuleSet
            ) -> tuple[float, float, list[list[FeatureVector]]]:
    """Bytes per device: our two states, and one River pipeline, after the same stream;
    and the devices' feature vectors (for the learned models' memory)."""
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
    vectors = _vectors(fleet, args, ruleset)
    features = [[_numeric(v) for v in device] for device in vectors]

    def river() -> list[compose.Pipeline]:
        models = [_river_model() for _ in fleet]
        for model, xs in zip(models, features, strict=True):
            for x in xs:
                model.learn_one(x)
        return models

    river_bytes, _ = _allocated(river)
    return ours_bytes / len(fleet), river_bytes / len(fleet), vectors


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


def _learned_memory(learned: Learned, vectors: list[list[FeatureVector]]
                    ) -> tuple[float, float, float, float]:
    """Bytes per device: a ``BaselineState`` (the memory fleet's, after its stream), the
    bank's row, the timed fleet's peer window, and its cohorts' HST models (copied under
    tracemalloc: a copy allocates what the original holds)."""
    settings = BaselineSettings()

    def baselines() -> list[BaselineState | None]:
        states: list[BaselineState | None] = []
        for device in vectors:
            state = None
            for v in device[-LEARNED_WARM_UP:]:  # a state's size does not grow
                _, state = update_baseline(state, v, settings)
            states.append(state)
        return states

    devices = len(learned.ids)
    state_bytes, _ = _allocated(baselines)
    window_bytes, _ = _allocated(lambda: copy.deepcopy(learned.window))
    hst_bytes, _ = _allocated(lambda: copy.deepcopy(learned.models))
    bank = (learned.tables.nbytes + learned.reports.nbytes) / devices
    return state_bytes / len(vectors), bank, window_bytes / devices, hst_bytes / devices


def _learned_single(learned: Learned) -> Callable[[list[tuple[int, TelemetryReport]],
                                                   list[FeatureVector]], int]:
    """The learned side one report at a time (the per-device functions), from a copy."""
    settings = learned.settings
    states: list[BaselineState | None] = [
        BaselineState(int(learned.reports[i]), learned.tables[i].copy())
        for i in range(len(learned.ids))]
    window = copy.deepcopy(learned.window)
    models = copy.deepcopy(learned.models)
    cohort_of = {int(i): name for name, rows in learned.cohorts.items() for i in rows}

    def loop(stream: list[tuple[int, TelemetryReport]], vectors: list[FeatureVector]) -> int:
        for (index, _), v in zip(stream, vectors, strict=True):
            _, states[index] = update_baseline(states[index], v, settings)
            cohort, device_id = cohort_of[index], learned.ids[index]
            observe_peer(window, cohort, device_id, v)
            peer_verdicts(window, cohort, device_id, v)
            update_hst_rows(models[cohort], feature_matrix([v]), [v.collected_at_ms])
        return len(vectors)

    return loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--reports", type=int, default=20, help="timed reports per device")
    parser.add_argument("--window", type=int, default=250,
                        help="untimed warm-up reports per device (River's window size)")
    parser.add_argument("--attacked", type=int, default=7, help="devices attacked")
    parser.add_argument("--memory-devices", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"bench_detect: {_pin_to_one_cpu()}; {args.devices} devices, {args.window} warm-up "
          f"and {args.reports} timed reports each, {args.attacked} attacked")
    ruleset = default_ruleset()

    started = time.perf_counter()
    fleet = _fleet(args.devices, args.seed)
    per_device = [_river_model() for _ in fleet]
    last: deque[dict[str, float]] = deque(maxlen=args.window)
    learned = Learned(fleet)
    ours = _warm_up(fleet, args.window, ruleset, per_device, last, learned)
    shared = _river_model()
    for x in last:
        shared.learn_one(x)  # past its first window, on the fleet's last warm-up reports
    first_timed = args.window + 1
    attacked = _attack(fleet, args.attacked, T0 + first_timed * MINUTE_MS, args.seed)
    stream = list(_rounds(fleet, first_timed, args.reports))
    vectors = list(_peek(ours, ruleset, stream))
    xs = [_numeric(v) for v in vectors]
    ours_all = [Ours(s.context, s.feature_state, s.rule_state) for s in ours]
    learned_alone = copy.deepcopy(learned)
    single = _learned_single(learned)
    print(f"set-up (simulation and warm-up, untimed): {time.perf_counter() - started:.1f} s; "
          f"{len(stream):,} timed reports, {len(FEATURES)} numeric features each")

    verdicts: dict[int, int] = {}
    learned_flagged: set[int] = set()
    rounds = range(0, len(stream), len(fleet))

    def ours_loop() -> int:
        for index, report in stream:
            state = ours[index]
            features, state.feature_state = extract_features(state.feature_state, report)
            found, state.rule_state = evaluate(ruleset, state.rule_state, features, state.context)
            if found:
                verdicts[index] = verdicts.get(index, 0) + len(found)
        return len(stream)

    def all_loop() -> int:
        for start in rounds:
            batch = []
            for index, report in stream[start:start + len(fleet)]:
                state = ours_all[index]
                features, state.feature_state = extract_features(state.feature_state, report)
                _, state.rule_state = evaluate(ruleset, state.rule_state, features,
                                               state.context)
                batch.append(features)
            learned_flagged.update(learned.step(batch))
        return len(stream)

    def learned_loop() -> int:
        for start in rounds:
            learned_alone.step(vectors[start:start + len(fleet)])
        return len(vectors)

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
    all_rate = _time(all_loop)
    learned_rate = _time(learned_loop)
    single_rate = _time(lambda: single(stream, vectors))
    per_device_rate = _time(per_device_loop)
    shared_rate = _time(shared_loop)
    flagged = sorted(verdicts)
    print(f"rule verdicts: {sum(verdicts.values())} on {len(flagged)} devices; attacked "
          f"{attacked}, of them flagged {sorted(set(attacked) & set(flagged))}")
    print(f"learned verdicts on {len(learned_flagged)} devices; of the attacked, flagged "
          f"{sorted(set(attacked) & learned_flagged)}; others flagged "
          f"{sorted(learned_flagged - set(attacked))}")

    ours_bytes, river_bytes, memory_vectors = _memory(args, ruleset)
    state_b, bank_b, window_b, hst_b = _learned_memory(learned, memory_vectors)
    print(f"{'per report, one core':72} {'reports/s':>10} {'us/report':>10}")
    rows = [("ours: extract_features + evaluate, default rules", ours_rate),
            ("ours, all together: features + rules + baselines + peers + HST, batched",
             all_rate),
            ("ours, learned side alone (baselines + peers + HST), batched", learned_rate),
            ("ours, learned side alone, one report at a time", single_rate),
            ("River: MinMaxScaler | HalfSpaceTrees, one per device", per_device_rate),
            ("River: MinMaxScaler | HalfSpaceTrees, one shared", shared_rate)]
    for label, rate in rows:
        print(f"{label:72} {rate:10,.0f} {1e6 / rate:10.1f}")
    print("wall time / CPU time of each timed loop (1.0: the core was ours alone): "
          + ", ".join(f"{r:.2f}" for r in WALL_OVER_CPU))
    print(f"ratio ours (rules) / River per device: {ours_rate / per_device_rate:.2f}; "
          f"ours (rules) / River shared: {ours_rate / shared_rate:.2f}")
    print(f"ratio ours all together / River per device: {all_rate / per_device_rate:.2f}; "
          f"/ River shared: {all_rate / shared_rate:.2f}; learned side batched / River "
          f"shared: {learned_rate / shared_rate:.2f}")
    target = TARGET_PER_SECOND
    print(f"ratio to the target {target:,} reports/s/core: rules {ours_rate / target:.3f}; "
          f"all together {all_rate / target:.3f} ({math.ceil(target / all_rate)} cores for "
          f"it); learned side batched {learned_rate / target:.2f}; one at a time "
          f"{single_rate / target:.3f}; River per device {per_device_rate / target:.3f}")
    print(f"memory per device ({args.memory_devices} devices, tracemalloc): ours (feature and "
          f"rule state) {ours_bytes:,.0f} B; River pipeline {river_bytes:,.0f} B; ratio "
          f"{ours_bytes / river_bytes:.3f}")
    print(f"learned memory per device: BaselineState {state_b:,.0f} B (in the batch bank "
          f"{bank_b:,.0f} B); peer window {window_b:,.0f} B; HST {hst_b:,.0f} B "
          f"({len(learned.models)} cohort models of {hst_b * args.devices / len(learned.models):,.0f}"
          f" B over {args.devices} devices); all learned {state_b + window_b + hst_b:,.0f} B "
          f"against River's {river_bytes:,.0f} B: ratio "
          f"{(state_b + window_b + hst_b) / river_bytes:.4f}")


def _peek(ours: list[Ours], ruleset: RuleSet, stream: list[tuple[int, TelemetryReport]]
          ) -> Iterator[FeatureVector]:
    """The stream's feature vectors from the warmed states, leaving them as they are."""
    states = {i: Ours(s.context, s.feature_state, s.rule_state) for i, s in enumerate(ours)}
    for index, report in stream:
        yield _ours_step(ruleset, states[index], report)


if __name__ == "__main__":
    main()
