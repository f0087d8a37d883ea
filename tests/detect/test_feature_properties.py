"""Whatever sequence of reports a device sends (reboots, resets, clocks going back, lost
reports), features never crash and a rate is never negative: a bad report is a baseline,
not an alarm."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetguard.detect import RATE_FEATURES, DeviceFeatureState, extract_features

from .support import BOOT, OTHER_BOOT, T0, eth, net, report

counter = st.integers(min_value=0, max_value=2**64 - 1)
step = st.tuples(
    st.integers(min_value=-120_000, max_value=3_600_000),  # ms since the previous report
    st.sampled_from([BOOT, OTHER_BOOT]),
    counter, counter, counter,  # bytes out, tcp opens, udp out
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, min_size=1, max_size=12))
def test_rates_are_finite_and_never_negative_on_any_sequence(steps: list[tuple[int, str, int, int, int]]) -> None:
    state: DeviceFeatureState | None = None
    at = T0
    for gap, boot, bytes_out, opens, datagrams in steps:
        at = max(at + gap, 0)
        vector, state = extract_features(state, report(
            at, boot_id=boot, interfaces=[eth(bytes_out=bytes_out)],
            counters=net(tcp_active_opens=opens, udp_out_datagrams=datagrams)))
        rates = [vector.values[f] for f in RATE_FEATURES if f in vector.values]
        assert all(math.isfinite(r) and r >= 0 for r in rates), vector.values
        assert vector.new_baseline is None or not rates
