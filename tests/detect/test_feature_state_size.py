"""What one device's feature state costs in memory, measured (the figures in the
docstring of fleetguard.detect.features come from here: ``pytest -s`` prints them)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from fleetguard.detect import KNOWN_CAP, DeviceFeatureState, default_ruleset, extract_features
from fleetguard.protocol import TelemetryReport
from fleetguard.sim import Profile

from .support import (
    MINUTE_MS,
    T0,
    Watched,
    eth,
    executable,
    listening,
    net,
    outbound,
    report,
)


def _allocated(build: Callable[[], DeviceFeatureState]) -> tuple[int, DeviceFeatureState]:
    """Bytes still held by the state ``build`` returns (everything else it made is freed)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, state
    finally:
        tracemalloc.stop()


def _simulated(profile: Profile) -> DeviceFeatureState:
    watched = Watched.device(profile, default_ruleset(), seed=5)
    watched.run(60)
    assert watched.feature_state is not None
    return watched.feature_state


def _report_of_new_things(n: int) -> TelemetryReport:
    """A report at the protocol's limits, every address, port, listener and binary new."""
    first = n * 1024
    return report(
        T0 + n * MINUTE_MS, interfaces=[eth(n, n, n, n)], counters=net(),
        connections=[outbound(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                              1 + i % 65535) for i in range(first, first + 1024)],
        listeners=[listening(1 + (n * 512 + p) % 65535) for p in range(512)],
        executables=[executable(f"/opt/app/bin/{n:04d}-{i:02d}") for i in range(64)])


def _full() -> DeviceFeatureState:
    """Every known set at its cap: 4,096 addresses, ports, listeners and binaries."""
    state = None
    for n in range(KNOWN_CAP // 64):
        _, state = extract_features(state, _report_of_new_things(n))
    assert state is not None
    return state


def test_a_typical_device_state_costs_a_few_kilobytes() -> None:
    sizes = {profile: _allocated(lambda p=profile: _simulated(p))[0] for profile in Profile}
    print("feature state bytes per device:", {p.value: n for p, n in sizes.items()})
    assert sizes[Profile.SENSOR] < 8_000
    assert sizes[Profile.CAMERA] < 8_000
    assert sizes[Profile.GATEWAY] < 24_000


def test_a_device_that_shows_something_new_every_report_stops_growing_at_the_cap() -> None:
    size, state = _allocated(_full)
    print(f"feature state bytes, every known set full: {size}")
    assert {len(state.known_addresses), len(state.known_ports), len(state.known_listeners),
            len(state.known_executables)} == {KNOWN_CAP}
    assert size < 2_000_000
