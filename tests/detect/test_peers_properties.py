"""On any reports of any devices, a cohort's window holds at most its bound of devices,
and each band it gives is ordered and not negative."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetguard.detect.baselines import FEATURE_INDEX, FEATURES
from fleetguard.detect.features import Feature
from fleetguard.detect.peers import PeerSettings, PeerWindow, peer_band, peer_verdicts_rows

from .support import MINUTE_MS, T0

SETTINGS = PeerSettings(max_devices=6, refresh_ms=0)
observation = st.tuples(
    st.integers(0, 20),  # device
    st.integers(0, 40),  # minute
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e12)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(observation, min_size=1, max_size=60))
def test_a_cohort_is_bounded_and_its_bands_are_ordered(
    observations: list[tuple[int, int, float | None]],
) -> None:
    window = PeerWindow(SETTINGS)
    for device, minute, cpu in observations:
        x = np.full(len(FEATURES), math.nan)
        x[FEATURE_INDEX[Feature.CPU_PERCENT]] = math.nan if cpu is None else cpu
        at = T0 + minute * MINUTE_MS
        window.observe("c", f"d{device}", x, at)
        assert window.cohort_size("c") <= SETTINGS.max_devices
        for feature in FEATURES:
            band = peer_band(window, "c", feature, at)
            if band is not None:
                assert 0 <= band[0] <= band[1] and math.isfinite(band[1])
        for _, verdict in peer_verdicts_rows(window, "c", [f"d{device}"], x[None, :], at):
            assert verdict.expected_low is not None and verdict.expected_high is not None
            assert verdict.expected_low <= verdict.expected_high
