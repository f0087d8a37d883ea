from __future__ import annotations

import random

import pytest

from fleetguard.agent import Backoff
from fleetguard.core.errors import ConfigurationError


def test_delays_grow_exponentially_within_the_cap_and_jitter():
    backoff = Backoff(base_s=1, cap_s=60, rng=random.Random(1))
    ceilings, delays = [], []
    for _ in range(12):
        ceilings.append(backoff.ceiling())
        delays.append(backoff.next_delay())
    assert ceilings[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert all(c == 60 for c in ceilings[6:])
    assert all(1 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not in lockstep
    assert backoff.attempts == 12


def test_reset_after_success_and_no_overflow_after_many_failures():
    backoff = Backoff(base_s=0.5, cap_s=30, rng=random.Random(2))
    for _ in range(10_000):
        assert backoff.next_delay() <= 30
    backoff.reset()
    assert backoff.attempts == 0 and backoff.ceiling() == 0.5


def test_a_fleet_spreads_out():
    first = [Backoff(base_s=1, cap_s=300, rng=random.Random(seed)) for seed in range(200)]
    for backoff in first:
        for _ in range(8):
            backoff.next_delay()
    waits = [round(b.next_delay()) for b in first]
    assert len(set(waits)) > 100


@pytest.mark.parametrize("kwargs", [{"base_s": 0}, {"base_s": 10, "cap_s": 5}, {"factor": 0.5}])
def test_bad_settings(kwargs):
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)
