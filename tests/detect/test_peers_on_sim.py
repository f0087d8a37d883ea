"""A device against its peers, on the simulator's devices: a new device in a fleet is
judged from its first reports; a cohort over hours of diurnal load and reboots is quiet."""

from __future__ import annotations

import pytest

from fleetguard.detect import Family, RuleKind
from fleetguard.detect.peers import PeerSettings, peer_band
from fleetguard.sim import Profile, Scenario

from .learned_support import COHORT, Cohort

CAUGHT = {
    Scenario.EXFILTRATION: Family.EXFILTRATION,
    Scenario.FLOOD: Family.FLOODING,
    Scenario.CRYPTOMINER: Family.MINER,
    Scenario.PORT_SCAN: Family.SCANNING,
}


def _peer_summaries(cohort: Cohort, rounds: int) -> list[str]:
    return [v.summary for _ in range(rounds) for device in cohort.step() for v in device.peer]


@pytest.mark.parametrize("profile", list(Profile))
def test_a_cohort_over_half_a_day_of_diurnal_load_and_reboots_raises_no_peer_verdict(
    profile: Profile,
) -> None:
    cohort = Cohort.of(profile, 8, seed=5, diurnal=True)
    found = _peer_summaries(cohort, 6 * 60)
    for member in cohort.members[::2]:
        cohort.reboot(member)
    found += _peer_summaries(cohort, 6 * 60)
    assert found == []


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("scenario", list(CAUGHT))
def test_a_new_device_that_is_attacked_from_the_start_is_flagged_by_its_peers_by_its_second_report(
    profile: Profile, scenario: Scenario,
) -> None:
    cohort = Cohort.of(profile, 8, seed=2)
    cohort.run(5)
    newcomer = cohort.join(seed=2)
    cohort.attack(newcomer, scenario, -30_000)  # under way before it ever reports
    first, second = (cohort.step()[-1].peer for _ in range(2))
    # Rates need two reports of the same boot; CPU, two reports pinned in a row.
    seen = {v.family for v in first + second}
    assert CAUGHT[scenario] in seen, (first, second)
    assert all(v.kind is RuleKind.PEER for v in first + second)


def test_a_peer_verdict_names_the_cohort_s_band_and_how_many_peers_set_it() -> None:
    cohort = Cohort.of(Profile.CAMERA, 8, seed=4)
    cohort.run(3)
    cohort.attack(cohort.members[0], Scenario.CRYPTOMINER, -30_000)
    cohort.step()
    # The busiest process's CPU (a share of the device's) stands out more than the total.
    (verdict,) = [v for v in cohort.step()[0].peer if v.family is Family.MINER]
    normal = peer_band(cohort.window, COHORT, verdict.features[0], cohort.now_ms)
    assert normal is not None
    assert (verdict.expected_low, verdict.expected_high) == pytest.approx(normal)
    assert verdict.observed is not None and verdict.observed > normal[1]
    assert "its 8 peers'" in verdict.summary
    assert verdict.family is Family.MINER


def test_a_fleet_smaller_than_the_minimum_cohort_raises_no_peer_verdict() -> None:
    cohort = Cohort.of(Profile.SENSOR, 3, seed=4)
    cohort.run(2)
    cohort.attack(cohort.members[0], Scenario.FLOOD, 1_000)
    assert _peer_summaries(cohort, 3) == []
    assert PeerSettings().min_cohort > 3


def test_five_devices_are_enough_to_flag_the_odd_one_in_the_first_hour() -> None:
    cohort = Cohort.of(Profile.GATEWAY, 5, seed=8)
    cohort.run(2)
    cohort.attack(cohort.members[3], Scenario.EXFILTRATION, 1_000)
    found = [(i, v.family) for _ in range(2) for i, d in enumerate(cohort.step()) for v in d.peer]
    assert (3, Family.EXFILTRATION) in found
    assert {i for i, _ in found} == {3}
