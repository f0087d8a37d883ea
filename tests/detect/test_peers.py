"""The peer window on hand-made values: the window, the minimum cohort, the bound on
devices, a late report, exemptions, and the batch path agreeing with one at a time."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest

from fleetguard.detect import Family, RuleKind
from fleetguard.detect.baselines import FEATURE_INDEX, FEATURES
from fleetguard.detect.features import Feature
from fleetguard.detect.peers import (
    PeerExemptions,
    PeerSettings,
    PeerWindow,
    peer_band,
    peer_verdicts_rows,
)

from .support import MINUTE_MS, T0

CPU = Feature.CPU_PERCENT
COHORT = "sensor/lab"


def row(**values: float) -> np.ndarray:
    x = np.full(len(FEATURES), math.nan)
    for name, value in values.items():
        x[FEATURE_INDEX[Feature(name)]] = value
    return x


ONE_REPORT = PeerSettings(refresh_ms=0, for_reports_by_feature=MappingProxyType({}))


def filled(devices: int, at_ms: int = T0, settings: PeerSettings | None = None) -> PeerWindow:
    window = PeerWindow(settings or ONE_REPORT)
    for d in range(devices):
        window.observe(COHORT, f"d{d}", row(cpu_percent=10.0 + d % 3), at_ms)
    return window


def judge(window: PeerWindow, device: str, cpu: float, at_ms: int = T0,
          exemptions: PeerExemptions | None = None) -> list[Family]:
    return [v.family for _, v in peer_verdicts_rows(
        window, COHORT, [device], row(cpu_percent=cpu)[None, :], at_ms, exemptions)]


def test_a_device_far_from_its_cohort_is_a_peer_verdict() -> None:
    window = filled(6)
    assert judge(window, "new", 95.0) == [Family.MINER]
    assert judge(window, "new", 12.0) == []
    ((_, verdict),) = peer_verdicts_rows(window, COHORT, ["new"],
                                         row(cpu_percent=95.0)[None, :], T0)
    assert verdict.kind is RuleKind.PEER
    assert verdict.rule_id == "peer.cpu_percent"
    assert (verdict.expected_low, verdict.expected_high) == peer_band(window, COHORT, CPU, T0)


def test_below_the_minimum_cohort_nobody_is_judged() -> None:
    assert judge(filled(4), "new", 95.0) == []
    assert peer_band(filled(4), COHORT, CPU, T0) is None


def test_a_value_older_than_the_window_no_longer_counts() -> None:
    window = filled(6)
    later = T0 + PeerSettings().window_ms + MINUTE_MS
    assert judge(window, "new", 95.0, at_ms=later) == []  # the cohort's values are stale
    for d in range(5):
        window.observe(COHORT, f"d{d}", row(cpu_percent=10.0), later)
    assert judge(window, "new", 95.0, at_ms=later) == [Family.MINER]


def test_a_cohort_keeps_at_most_its_bound_of_devices_dropping_the_quietest() -> None:
    window = filled(12, settings=PeerSettings(refresh_ms=0, max_devices=8,
                                                   for_reports_by_feature={}))
    assert window.cohort_size(COHORT) == 8
    stats = window.stats(COHORT, T0)
    assert stats is not None and stats.count[FEATURE_INDEX[CPU]] == 8


def test_a_late_report_does_not_replace_a_newer_value() -> None:
    window = filled(5)
    window.observe(COHORT, "d0", row(cpu_percent=90.0), T0 + MINUTE_MS)
    window.observe(COHORT, "d0", row(cpu_percent=10.0), T0)  # arrives after, taken before
    latest = window.latest(COHORT, "d0")
    assert latest is not None and latest[FEATURE_INDEX[CPU]] == 90.0


def test_the_attacked_device_does_not_move_the_norm_it_is_judged_by() -> None:
    window = filled(6)
    window.observe(COHORT, "d0", row(cpu_percent=99.0), T0)
    assert judge(window, "d0", 99.0) == [Family.MINER]


def test_an_exempt_feature_of_a_device_is_not_judged_until_the_exemption_ends() -> None:
    window = filled(6)
    exemptions = PeerExemptions().with_exemption("new", CPU, T0 + MINUTE_MS, now_ms=T0)
    assert judge(window, "new", 95.0, exemptions=exemptions) == []
    assert judge(window, "other", 95.0, exemptions=exemptions) == [Family.MINER]
    assert judge(window, "new", 95.0, T0 + MINUTE_MS, exemptions) == [Family.MINER]


def test_expired_exemptions_are_dropped_when_one_is_added() -> None:
    exemptions = PeerExemptions().with_exemption("a", CPU, T0 + 10, now_ms=T0)
    exemptions = exemptions.with_exemption("b", CPU, T0 + 100, now_ms=T0 + 50)
    assert set(exemptions.until_ms) == {("b", CPU)}


def test_the_batch_path_judges_as_one_device_at_a_time() -> None:
    window = filled(10)
    values = np.array([[10.0], [50.0], [11.0], [99.0]])
    x = np.full((4, len(FEATURES)), math.nan)
    x[:, FEATURE_INDEX[CPU]] = values[:, 0]
    ids = ["a", "b", "c", "d"]
    batch = peer_verdicts_rows(window, COHORT, ids, x, T0)
    single = [(i, v) for i in range(4)
              for _, v in peer_verdicts_rows(window, COHORT, [ids[i]], x[i:i + 1], T0)]
    assert batch == single
    assert [i for i, _ in batch] == [1, 3]


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="3 devices"):
        PeerSettings(min_cohort=2)


def test_by_default_cpu_beyond_its_peers_is_a_verdict_on_the_second_report_in_a_row() -> None:
    window = filled(6, settings=PeerSettings(refresh_ms=0))
    assert judge(window, "d1", 95.0) == []  # an install's busy minute
    assert judge(window, "d1", 12.0) == []
    assert judge(window, "d1", 95.0) == []
    assert judge(window, "d1", 97.0) == [Family.MINER]
