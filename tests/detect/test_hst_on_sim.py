"""The cohort's Half-Space Trees on the simulator's devices: quiet over hours of diurnal
load and reboots; an attack flagged within two reports once warm, with the features
that were outside their normal ranges named."""

from __future__ import annotations

import pytest

from fleetguard.detect import Family, RuleKind
from fleetguard.detect.features import Feature
from fleetguard.detect.hst import HstSettings, hst_band
from fleetguard.sim import Profile, Scenario

from .learned_support import Cohort

WINDOW = HstSettings().window
CAUGHT = [Scenario.EXFILTRATION, Scenario.FLOOD, Scenario.CRYPTOMINER, Scenario.PORT_SCAN,
          Scenario.TELNET_BRUTEFORCE, Scenario.NEW_LISTENER]
NAMED = {
    Scenario.EXFILTRATION: Feature.BYTES_OUT_PER_S,
    Scenario.FLOOD: Feature.UDP_OUT_PER_S,
    Scenario.CRYPTOMINER: Feature.NEW_EXECUTABLES,  # its CPU is the baseline's and peers'
    Scenario.PORT_SCAN: Feature.TCP_FAILURES_PER_S,
    Scenario.TELNET_BRUTEFORCE: Feature.TCP_ATTEMPTS_PER_S,
    Scenario.NEW_LISTENER: Feature.LISTENERS_ADDED,
}


def _model_summaries(cohort: Cohort, rounds: int) -> list[str]:
    return [v.summary for _ in range(rounds) for device in cohort.step() for v in device.model]


@pytest.mark.parametrize("profile", list(Profile))
def test_a_cohort_over_half_a_day_of_diurnal_load_and_reboots_raises_no_model_verdict(
    profile: Profile,
) -> None:
    cohort = Cohort.of(profile, 6, seed=9, diurnal=True)
    found = _model_summaries(cohort, 6 * 60)
    for member in cohort.members[1::2]:
        cohort.reboot(member)
    found += _model_summaries(cohort, 6 * 60)
    assert found == []
    assert cohort.hst.windows > 10


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("scenario", CAUGHT)
def test_an_attack_is_flagged_by_the_model_within_two_reports_after_warm_up(
    profile: Profile, scenario: Scenario,
) -> None:
    for seed in range(3):
        cohort = Cohort.of(profile, 6, seed=seed)
        assert _model_summaries(cohort, 2 * WINDOW // 6 + 5) == []
        assert cohort.hst.ready
        victim = cohort.members[seed]
        cohort.attack(victim, scenario, 1 + (seed * 7_919) % 60_000)
        named = [{f for v in cohort.step()[seed].model for f in v.features} for _ in range(2)]
        assert NAMED[scenario] in named[0] | named[1], (seed, named)


def test_a_model_verdict_explains_which_features_left_their_normal_range() -> None:
    cohort = Cohort.of(Profile.CAMERA, 6, seed=1)
    cohort.run(3 * WINDOW // 6)
    normal = hst_band(cohort.hst, Feature.UDP_OUT_PER_S)
    assert normal is not None
    cohort.attack(cohort.members[2], Scenario.FLOOD, 1_000)
    cohort.step()
    (verdict,) = cohort.step()[2].model
    assert verdict.kind is RuleKind.MODEL
    assert verdict.rule_id == "model.hst"
    assert verdict.features[0] is Feature.UDP_OUT_PER_S
    assert verdict.family is Family.FLOODING
    assert (verdict.expected_low, verdict.expected_high) == pytest.approx(normal)
    assert verdict.observed is not None and verdict.observed > 30_000 > normal[1]
    assert "udp_out_per_s" in verdict.summary
    assert verdict.confidence.value == "high"


def test_nothing_is_judged_before_the_first_window_is_learned() -> None:
    cohort = Cohort.of(Profile.SENSOR, 4, seed=3)
    cohort.attack(cohort.members[0], Scenario.FLOOD, 1_000)
    assert _model_summaries(cohort, WINDOW // 4 - 1) == []
    assert not cohort.hst.ready
    assert cohort.hst.warm_up().reports_seen == WINDOW - 4


def test_a_new_fleet_whose_first_window_has_no_rates_raises_nothing_after() -> None:
    # 20 devices' first reports (no rates: nothing to diff against) fill a window of 16.
    cohort = Cohort.of(Profile.CAMERA, 20, seed=4, hst_settings=HstSettings(window=16))
    cohort.step()
    assert cohort.hst.ready
    assert hst_band(cohort.hst, Feature.BYTES_OUT_PER_S) is None  # not judged yet
    assert _model_summaries(cohort, 30) == []
    assert hst_band(cohort.hst, Feature.BYTES_OUT_PER_S) is not None
