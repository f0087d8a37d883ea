"""The learned detectors as the service runs them: a batch at once gives what one report at
a time gives."""

from __future__ import annotations

import random

import numpy as np

from fleetguard.detect import EvaluationContext, FeatureVector, default_ruleset, extract_features
from fleetguard.detect.learned import BaselineDetector, PeerDetector, cohort_of
from fleetguard.detect.pipeline import DetectionContext
from fleetguard.sim import DeviceModel, Profile
from tests.detect.support import MINUTE_MS, T0

DEVICES, REPORTS = 12, 30


def fleet_features() -> list[list[FeatureVector]]:
    """Per round, one report's features of each of a dozen simulated cameras."""
    models = [DeviceModel(index=i, profile=Profile.CAMERA, rng=random.Random(i), now_ms=T0)
              for i in range(DEVICES)]
    states: list = [None] * DEVICES
    rounds = []
    for r in range(REPORTS):
        row = []
        for i, model in enumerate(models):
            vector, states[i] = extract_features(states[i], model.report(T0 + (r + 1) * MINUTE_MS))
            row.append(vector)
        rounds.append(row)
    # The last round: device 0 sends 50 times its traffic.
    last = rounds[-1][0]
    rounds[-1][0] = FeatureVector(**{
        **{f: getattr(last, f) for f in FeatureVector.__dataclass_fields__},
        "values": {**last.values, **{k: v * 50 for k, v in last.values.items()
                                     if k.value == "bytes_out_per_s"}}})
    return rounds


def context(i: int) -> DetectionContext:
    return DetectionContext(device_id=f"d{i}", groups=(), hardware_model="camera",
                            ruleset=default_ruleset(), evaluation=EvaluationContext(), now_ms=T0)


def test_a_batch_of_baselines_judges_and_learns_as_one_report_at_a_time() -> None:
    rounds = fleet_features()
    one, many = BaselineDetector(), BaselineDetector()
    singly: list = [None] * DEVICES
    batched: list = [None] * DEVICES
    found_one, found_many = [], []
    for row in rounds:
        for i, vector in enumerate(row):
            verdicts, singly[i] = one.detect(singly[i], vector, context(i))
            found_one += [(i, v.rule_id) for v in verdicts]
        results = many.detect_many([(batched[i], v, context(i)) for i, v in enumerate(row)])
        for i, (verdicts, state) in enumerate(results):
            batched[i] = state
            found_many += [(i, v.rule_id) for v in verdicts]
    assert (0, "baseline.bytes_out_per_s") in found_one
    assert found_many == found_one
    assert all(np.array_equal(a.table, b.table, equal_nan=True)
               for a, b in zip(singly, batched, strict=True))


def test_a_batch_of_peers_flags_the_device_unlike_its_cohort_as_one_at_a_time_does() -> None:
    rounds = fleet_features()
    one, many = PeerDetector(), PeerDetector()
    for r, row in enumerate(rounds):
        singly = [one.detect(None, vector, context(i))[0] for i, vector in enumerate(row)]
        batched = [found for found, _ in many.detect_many(
            [(None, vector, context(i)) for i, vector in enumerate(row)])]
        if r == len(rounds) - 1:
            flagged_one = sorted((i, v.rule_id) for i, f in enumerate(singly) for v in f)
            flagged_many = sorted((i, v.rule_id) for i, f in enumerate(batched) for v in f)
    assert (0, "peer.bytes_out_per_s") in flagged_many
    assert flagged_many == flagged_one


def test_a_device_with_no_hardware_model_is_compared_with_no_peers() -> None:
    rounds = fleet_features()
    detector = PeerDetector()
    unmodelled = [DetectionContext(device_id=f"d{i}", groups=(), hardware_model=None,
                                   ruleset=default_ruleset(), evaluation=EvaluationContext(),
                                   now_ms=T0) for i in range(DEVICES)]
    for row in rounds:
        results = detector.detect_many([(None, v, unmodelled[i]) for i, v in enumerate(row)])
    assert all(found == [] for found, _ in results)  # device 0's 50x traffic included
    assert detector.window.cohort_size(cohort_of(unmodelled[0])) == 0
