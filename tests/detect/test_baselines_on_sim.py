"""Each device's own learned normal, on the simulator's devices: quiet over a day of
diurnal load and a reboot, and an attack flagged within two reports once warm."""

from __future__ import annotations

import pytest

from fleetguard.detect import Family, RuleKind
from fleetguard.detect.baselines import BaselineSettings, band, warm_up
from fleetguard.detect.features import Feature
from fleetguard.sim import Profile, Scenario

from .learned_support import Cohort, diurnal_factor
from .support import MINUTE_MS

WARM = BaselineSettings().warm_up_reports
CAUGHT = {
    Scenario.EXFILTRATION: Family.EXFILTRATION,
    Scenario.FLOOD: Family.FLOODING,
    Scenario.CRYPTOMINER: Family.MINER,
    Scenario.PORT_SCAN: Family.SCANNING,
    Scenario.TELNET_BRUTEFORCE: Family.BRUTE_FORCE,
}


def _baseline_summaries(cohort: Cohort, rounds: int) -> list[str]:
    return [v.summary for _ in range(rounds) for device in cohort.step()
            for v in device.baseline]


@pytest.mark.parametrize("profile", list(Profile))
def test_a_day_of_diurnal_load_and_a_reboot_raises_no_baseline_verdict(profile: Profile) -> None:
    cohort = Cohort.of(profile, 4, seed=3, diurnal=True)
    found = _baseline_summaries(cohort, 12 * 60)
    for member in cohort.members:
        cohort.reboot(member)
    found += _baseline_summaries(cohort, 12 * 60)
    assert found == []


def test_the_diurnal_cycle_is_really_in_the_features() -> None:
    cohort = Cohort.of(Profile.CAMERA, 1, diurnal=True)
    by_hour = {}
    for _ in range(24 * 60):
        cohort.step()
        vector = cohort.members[0].last
        assert vector is not None
        if vector.get(Feature.BYTES_OUT_PER_S) is not None:
            by_hour[(cohort.now_ms // (60 * MINUTE_MS)) % 24] = vector.get(Feature.BYTES_OUT_PER_S)
    assert max(by_hour.values()) > 2.5 * min(by_hour.values())
    assert diurnal_factor(cohort.now_ms) != diurnal_factor(cohort.now_ms + 6 * 60 * MINUTE_MS)


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("scenario", list(CAUGHT))
def test_an_attack_is_flagged_by_the_baseline_within_two_reports_after_warm_up(
    profile: Profile, scenario: Scenario,
) -> None:
    for seed in range(4):
        cohort = Cohort.of(profile, 1, seed=seed)
        assert _baseline_summaries(cohort, WARM + 10) == []
        assert warm_up(cohort.members[0].baseline).ready
        cohort.attack(cohort.members[0], scenario, 1 + (seed * 7_919) % MINUTE_MS)
        flagged = [{v.family for v in cohort.step()[0].baseline} for _ in range(2)]
        assert CAUGHT[scenario] in flagged[0] | flagged[1], (seed, flagged)


def test_a_baseline_verdict_says_what_was_seen_against_which_band() -> None:
    cohort = Cohort.of(Profile.CAMERA, 1)
    cohort.run(WARM * 3)
    normal = band(cohort.members[0].baseline, Feature.BYTES_OUT_PER_S)
    assert normal is not None
    cohort.attack(cohort.members[0], Scenario.EXFILTRATION, 1_000)
    cohort.step()
    (verdict,) = [v for v in cohort.step()[0].baseline
                  if v.features == (Feature.BYTES_OUT_PER_S,)]
    assert verdict.kind is RuleKind.BASELINE
    assert verdict.family is Family.EXFILTRATION
    assert verdict.observed is not None and verdict.observed > 1_000_000
    assert (verdict.expected_low, verdict.expected_high) == pytest.approx(normal, rel=0.05)
    assert normal[0] < 250_000 < normal[1] < verdict.observed
    assert verdict.confidence.value == "high"
    assert verdict.rule_id == "baseline.bytes_out_per_s"


def test_an_attack_during_warm_up_is_not_judged_by_the_baseline() -> None:
    cohort = Cohort.of(Profile.SENSOR, 1)
    cohort.run(3)
    cohort.attack(cohort.members[0], Scenario.FLOOD, 1_000)
    assert _baseline_summaries(cohort, WARM - 5) == []
    assert not warm_up(cohort.members[0].baseline).ready
