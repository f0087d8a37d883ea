"""An alarm an operator marks false positive is not raised again for the same behaviour;
the rest of what the learned side watches is still watched."""

from __future__ import annotations

import pytest

from fleetguard.core.errors import ValidationFailedError
from fleetguard.detect import Family, RuleKind
from fleetguard.detect.features import Feature
from fleetguard.detect.feedback import (
    accept_baseline_false_positive,
    accept_model_false_positive,
    exempt_peer_false_positive,
)
from fleetguard.detect.hst import HstSettings
from fleetguard.sim import Profile, Scenario

from .learned_support import Cohort, Verdicts
from .support import MINUTE_MS

WARM_ROUNDS = 2 * HstSettings().window // 6 + 5


def _flagged_step(cohort: Cohort, index: int) -> Verdicts:
    """Steps until device ``index`` has a verdict of every learned kind (at most 3)."""
    for _ in range(3):
        found = cohort.step()[index]
        if found.baseline and found.peer and found.model:
            return found
    pytest.fail("the behaviour was not flagged by every learned kind")


def test_a_baseline_false_positive_is_not_flagged_again_but_more_of_it_is() -> None:
    cohort = Cohort.of(Profile.CAMERA, 1, seed=4)
    cohort.run(40)
    member = cohort.members[0]
    cohort.attack(member, Scenario.EXFILTRATION, -30_000)  # an approved bulk upload
    verdicts = cohort.step()[0].baseline
    assert {v.family for v in verdicts} >= {Family.EXFILTRATION}
    state = member.baseline
    assert state is not None
    for verdict in verdicts:
        state = accept_baseline_false_positive(state, verdict)
    member.baseline = state
    assert [v.summary for _ in range(20) for v in cohort.step()[0].baseline] == []
    cohort.attack(member, Scenario.FLOOD, 1_000)  # something else, far beyond it
    cohort.step()
    assert Family.FLOODING in {v.family for v in cohort.step()[0].baseline}


def test_a_peer_false_positive_exempts_that_device_s_feature_and_no_other() -> None:
    cohort = Cohort.of(Profile.SENSOR, 8, seed=6)
    cohort.run(3)
    odd, other = cohort.members[2], cohort.members[5]
    cohort.attack(odd, Scenario.CRYPTOMINER, -30_000)  # a device meant to compute
    verdicts = cohort.step()[2].peer + cohort.step()[2].peer  # CPU: two reports in a row
    assert Feature.CPU_PERCENT in {f for v in verdicts for f in v.features}
    for verdict in verdicts:
        cohort.exemptions = exempt_peer_false_positive(cohort.exemptions, odd.device_id,
                                                       verdict)
    assert [v.summary for _ in range(10) for v in cohort.step()[2].peer] == []
    cohort.attack(other, Scenario.CRYPTOMINER, 1_000)
    cohort.step()
    cohort.step()
    assert Family.MINER in {v.family for v in cohort.step()[5].peer}


def test_a_peer_exemption_ends_after_its_time() -> None:
    cohort = Cohort.of(Profile.SENSOR, 8, seed=6)
    cohort.run(3)
    cohort.attack(cohort.members[2], Scenario.CRYPTOMINER, -30_000)
    cohort.step()
    (verdict,) = [v for v in cohort.step()[2].peer if v.features == (Feature.CPU_PERCENT,)]
    cohort.exemptions = exempt_peer_false_positive(
        cohort.exemptions, cohort.members[2].device_id, verdict, duration_ms=5 * MINUTE_MS)
    cpu = [Feature.CPU_PERCENT in {f for v in cohort.step()[2].peer for f in v.features}
           for _ in range(6)]
    assert cpu[:4] == [False] * 4 and cpu[-1]


def test_a_model_false_positive_is_not_flagged_again_by_the_cohort_s_model() -> None:
    cohort = Cohort.of(Profile.GATEWAY, 6, seed=2)
    cohort.run(WARM_ROUNDS)
    member = cohort.members[1]
    cohort.attack(member, Scenario.EXFILTRATION, -30_000)  # a nightly backup
    found = cohort.step()[1]
    (verdict,) = found.model
    assert member.last is not None
    cohort.hst = accept_model_false_positive(cohort.hst, member.last, verdict)
    assert [v.summary for _ in range(20) for v in cohort.step()[1].model] == []
    cohort.attack(cohort.members[4], Scenario.FLOOD, 1_000)
    cohort.step()
    assert [v.kind for v in cohort.step()[4].model] == [RuleKind.MODEL]


def test_feedback_on_a_verdict_of_another_kind_is_refused() -> None:
    cohort = Cohort.of(Profile.CAMERA, 8, seed=1)
    cohort.run(WARM_ROUNDS)
    cohort.attack(cohort.members[0], Scenario.FLOOD, -30_000)
    cohort.step()
    found = _flagged_step(cohort, 0)
    state, last = cohort.members[0].baseline, cohort.members[0].last
    assert state is not None and last is not None
    with pytest.raises(ValidationFailedError, match="not a baseline verdict") as refused:
        accept_baseline_false_positive(state, found.peer[0])
    assert refused.value.code == "feedback_not_applicable"
    with pytest.raises(ValidationFailedError, match="not a peer verdict"):
        exempt_peer_false_positive(None, "device-0", found.model[0])
    with pytest.raises(ValidationFailedError, match="not a model verdict"):
        accept_model_false_positive(cohort.hst, last, found.baseline[0])
