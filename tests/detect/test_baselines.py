"""A device's own learned normal, on hand-made feature vectors: warm-up, bands, verdicts,
what an absent rate does, and the vectorised path agreeing with the per-device one."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest

from fleetguard.detect import Confidence, Family, FeatureVector, NewBaseline, RuleKind
from fleetguard.detect.baselines import (
    FEATURE_INDEX,
    BaselineSettings,
    BaselineState,
    band,
    feature_matrix,
    new_table,
    update_baseline,
    update_baseline_rows,
    warm_up,
)
from fleetguard.detect.features import Feature

from .support import MINUTE_MS, T0

SETTINGS = BaselineSettings(warm_up_reports=10)
OUT = Feature.BYTES_OUT_PER_S
CPU = Feature.CPU_PERCENT


def vector(n: int, values: dict[Feature, float],
           new_baseline: NewBaseline | None = None) -> FeatureVector:
    return FeatureVector(
        collected_at_ms=T0 + n * MINUTE_MS, values=MappingProxyType(values),
        new_baseline=new_baseline, destinations=(), listeners=(), new_destinations=(),
        new_remote_ports=(), listeners_added=(), listeners_removed=(), first_listeners=(),
        executables=(), first_executables=())


def normal(n: int) -> FeatureVector:
    """A camera-like device: 250 KB/s out +-4 %, CPU 20 +-3."""
    wobble = math.sin(n * 1.7)
    return vector(n, {OUT: 250_000 * (1 + 0.04 * wobble), CPU: 20 + 3 * wobble})


def learned(reports: int, settings: BaselineSettings = SETTINGS) -> BaselineState:
    state = None
    for n in range(reports):
        verdicts, state = update_baseline(state, normal(n), settings)
        assert verdicts == []
    assert state is not None
    return state


def test_a_device_has_no_band_and_no_verdict_until_its_warm_up_is_done() -> None:
    state = None
    for n in range(SETTINGS.warm_up_reports - 1):
        _, state = update_baseline(state, normal(n), SETTINGS)
    assert warm_up(state, SETTINGS).reports_seen == 9
    assert not warm_up(state, SETTINGS).ready
    assert band(state, OUT, SETTINGS) is None
    verdicts, state = update_baseline(state, vector(9, {OUT: 50e6, CPU: 99}), SETTINGS)
    assert verdicts == []  # judged only against a finished warm-up
    assert warm_up(state, SETTINGS).ready


def test_the_band_is_around_what_the_device_does() -> None:
    low, high = band(learned(40), OUT, SETTINGS) or (0, 0)
    assert 0 < low < 240_000 and 260_000 < high < 500_000


def test_a_value_far_above_the_band_is_a_verdict_that_explains_itself() -> None:
    state = learned(40)
    expected = band(state, OUT, SETTINGS)
    verdicts, _ = update_baseline(state, vector(41, {OUT: 2_000_000, CPU: 20}), SETTINGS)
    (verdict,) = verdicts
    assert verdict.kind is RuleKind.BASELINE
    assert verdict.rule_id == "baseline.bytes_out_per_s"
    assert verdict.features == (OUT,)
    assert verdict.family is Family.EXFILTRATION
    assert verdict.observed == 2_000_000
    assert (verdict.expected_low, verdict.expected_high) == pytest.approx(expected)
    assert verdict.confidence is Confidence.HIGH
    assert "2e+06 above this device's normal" in verdict.summary


def test_a_value_far_below_normal_is_an_anomaly_with_no_family() -> None:
    (verdict,) = update_baseline(learned(40), vector(41, {OUT: 0.0, CPU: 20}), SETTINGS)[0]
    assert verdict.family is Family.ANOMALY
    assert verdict.observed == 0.0


def test_a_value_just_outside_the_band_is_flagged_with_low_confidence() -> None:
    state = learned(40)
    _, high = band(state, OUT, SETTINGS) or (0, 0)
    (verdict,) = update_baseline(state, vector(41, {OUT: high * 1.02, CPU: 20}), SETTINGS)[0]
    assert verdict.confidence is Confidence.LOW
    assert verdict.family is Family.EXFILTRATION


def test_cpu_far_above_normal_is_a_verdict_on_its_second_report_not_its_first() -> None:
    state = learned(40)
    first, state = update_baseline(state, vector(40, {OUT: 250_000, CPU: 70.0}), SETTINGS)
    second, state = update_baseline(state, vector(41, {OUT: 250_000, CPU: 99.0}), SETTINGS)
    assert first == []  # a busy minute (an install) is normal
    assert [v.family for v in second] == [Family.MINER]


def test_inbound_traffic_far_above_normal_is_no_verdict() -> None:
    state = learned(40)
    download = {OUT: 250_000, CPU: 20, Feature.BYTES_IN_PER_S: 400_000.0}
    for n in range(40, 80):  # learned at 6 KB/s first, then a 400 KB/s download
        download[Feature.BYTES_IN_PER_S] = 6_000.0 if n < 55 else 400_000.0
        verdicts, state = update_baseline(state, vector(n, download), SETTINGS)
        assert verdicts == [], n
    assert band(state, Feature.BYTES_IN_PER_S, SETTINGS) is not None


def test_an_absent_rate_neither_teaches_nor_counts() -> None:
    state = learned(30)
    gap = vector(30, {CPU: 20.0}, NewBaseline.REBOOT)  # a reboot: no rates at all
    _, after = update_baseline(state, gap, SETTINGS)
    column = FEATURE_INDEX[OUT]
    assert np.array_equal(after.table[:, column], state.table[:, column])
    assert after.reports == state.reports + 1


def test_a_streak_setting_waits_for_that_many_reports_outside() -> None:
    settings = BaselineSettings(warm_up_reports=10, for_reports=2)
    state = learned(30, settings)
    first, state = update_baseline(state, vector(30, {CPU: 99.0}), settings)
    absent, state = update_baseline(state, vector(31, {}), settings)
    second, state = update_baseline(state, vector(32, {CPU: 99.0}), settings)
    assert first == [] and absent == []
    (verdict,) = second
    assert verdict.reports == 2
    assert verdict.since_ms == T0 + 30 * MINUTE_MS


def test_a_lasting_new_normal_is_absorbed_within_hours_but_not_within_minutes() -> None:
    state = learned(60)
    flagged = []
    for n in range(60, 60 + 8 * 60):
        verdicts, state = update_baseline(state, vector(n, {OUT: 600_000.0, CPU: 20}),
                                          SETTINGS)
        flagged.append(bool(verdicts))
    assert all(flagged[:30])
    assert not any(flagged[-60:])


def test_a_state_is_stored_as_plain_numbers_and_read_back_the_same() -> None:
    state = learned(25)
    data = state.to_bytes()
    back = BaselineState.from_bytes(data)
    assert back.reports == state.reports
    assert np.array_equal(back.table, state.table)
    assert len(data) == 8 + 8 * state.table.size
    with pytest.raises(ValueError, match="bytes"):
        BaselineState.from_bytes(data[:-8])


def test_the_vectorised_path_judges_and_learns_as_the_per_device_path_does() -> None:
    devices = 3
    tables = new_table(devices)
    reports = np.zeros(devices, np.int64)
    states: list[BaselineState | None] = [None] * devices
    rows = np.arange(devices)
    flagged = []
    for n in range(40):
        vectors = [normal(n + d) if n != 35 or d != 1 else vector(n, {OUT: 5e6, CPU: 20})
                   for d in range(devices)]
        at = np.array([v.collected_at_ms for v in vectors])
        batch = update_baseline_rows(tables, reports, rows, feature_matrix(vectors), at,
                                     SETTINGS)
        single = []
        for d in range(devices):
            verdicts, states[d] = update_baseline(states[d], vectors[d], SETTINGS)
            single += [(d, v) for v in verdicts]
        assert batch == single
        flagged += [d for d, _ in batch]
    for d in range(devices):
        state = states[d]
        assert state is not None
        assert np.array_equal(tables[d], state.table)
        assert reports[d] == state.reports
    assert flagged == [1]


def test_a_device_twice_in_one_vectorised_update_is_refused() -> None:
    with pytest.raises(ValueError, match="at most once"):
        update_baseline_rows(new_table(2), np.zeros(2, np.int64), np.array([0, 0]),
                             feature_matrix([normal(0), normal(1)]),
                             np.array([T0, T0]), SETTINGS)
