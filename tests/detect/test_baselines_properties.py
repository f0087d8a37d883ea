"""On any sequence of observations, a baseline stays bounded: finite estimates, a band
with low <= high that holds the mean, a fixed size in bytes and in memory."""

from __future__ import annotations

import gc
import math
import tracemalloc
from types import MappingProxyType

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetguard.detect import FeatureVector
from fleetguard.detect.baselines import (
    FEATURES,
    MEAN,
    BaselineSettings,
    BaselineState,
    band,
    update_baseline,
)
from fleetguard.detect.features import Feature

from .support import MINUTE_MS, T0

SETTINGS = BaselineSettings(warm_up_reports=5)
TRACKED = (Feature.BYTES_OUT_PER_S, Feature.CPU_PERCENT, Feature.NEW_EXECUTABLES)
value = st.one_of(st.none(), st.floats(min_value=0, max_value=1e12, allow_nan=False))
observations = st.lists(st.tuples(value, value, value), min_size=1, max_size=80)


def _vector(n: int, values: tuple[float | None, ...]) -> FeatureVector:
    present = {f: v for f, v in zip(TRACKED, values, strict=True) if v is not None}
    return FeatureVector(
        collected_at_ms=T0 + n * MINUTE_MS, values=MappingProxyType(present),
        new_baseline=None, destinations=(), listeners=(), new_destinations=(),
        new_remote_ports=(), listeners_added=(), listeners_removed=(), first_listeners=(),
        executables=(), first_executables=())


def _run(sequence: list[tuple[float | None, ...]]) -> BaselineState:
    state = None
    for n, values in enumerate(sequence):
        verdicts, state = update_baseline(state, _vector(n, values), SETTINGS)
        for verdict in verdicts:
            assert verdict.expected_low is not None and verdict.expected_high is not None
            assert 0 <= verdict.expected_low <= verdict.expected_high
            assert verdict.features[0] in TRACKED
    assert state is not None
    return state


@settings(max_examples=150, deadline=None)
@given(observations)
def test_estimates_stay_finite_and_bands_are_ordered_and_hold_the_mean(
    sequence: list[tuple[float | None, ...]],
) -> None:
    state = _run(sequence)
    assert np.isfinite(state.table[:5]).all()
    for column, feature in enumerate(FEATURES):
        normal = band(state, feature, SETTINGS)
        if normal is None:
            continue
        low, high = normal
        assert 0 <= low <= high
        assert math.isfinite(high)
        assert low <= max(state.table[MEAN, column], 0) <= high


@settings(max_examples=50, deadline=None)
@given(observations)
def test_a_state_is_the_same_size_whatever_it_has_seen(
    sequence: list[tuple[float | None, ...]],
) -> None:
    state = _run(sequence)
    assert len(state.to_bytes()) == 8 * (1 + 7 * len(FEATURES))
    assert state.reports == len(sequence)


def test_a_device_s_baseline_costs_about_a_kilobyte_and_a_half_in_memory() -> None:
    _run([(1.0, 1.0, 0.0)])  # what is made once per process (numpy's, the floors) first
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        states = [_run([(250_000.0 * (1 + (n % 7) / 100), 20.0 + d, 0.0) for n in range(60)])
                  for d in range(50)]
        gc.collect()
        size = (tracemalloc.get_traced_memory()[0] - before) / len(states)
    finally:
        tracemalloc.stop()
    print(f"baseline state bytes per device: {size:.0f}")
    assert {state.reports for state in states} == {60}
    assert size < 2_000
