"""Half-Space Trees on synthetic points: warm-up, window-based masses, a joint anomaly
inside every feature's range, batch scoring equal to one point at a time, a stored model
read back the same, and a size that does not grow with what it has seen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetguard.detect.baselines import FEATURE_INDEX, FEATURES
from fleetguard.detect.features import Feature
from fleetguard.detect.hst import HalfSpaceTrees, HstSettings, update_hst_rows

from .support import T0

SETTINGS = HstSettings(window=64, seed=3)
OUT, CPU = Feature.BYTES_OUT_PER_S, Feature.CPU_PERCENT


def points(n: int, seed: int = 0) -> np.ndarray:
    """Devices whose traffic and CPU rise together (a busier camera uses more CPU)."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.5, 1.5, n)
    x = np.zeros((n, len(FEATURES)))
    x[:, FEATURE_INDEX[OUT]] = 250_000 * load * rng.uniform(0.97, 1.03, n)
    x[:, FEATURE_INDEX[CPU]] = 30 * load * rng.uniform(0.97, 1.03, n)
    return x


def trained(windows: int = 2) -> HalfSpaceTrees:
    model = HalfSpaceTrees(SETTINGS)
    found = update_hst_rows(model, points(SETTINGS.window * windows), [T0] * 64 * windows)
    assert found == []
    return model


def test_the_model_judges_nothing_until_its_first_window_is_full() -> None:
    model = HalfSpaceTrees(SETTINGS)
    wild = points(SETTINGS.window - 1) * 100
    assert update_hst_rows(model, wild, [T0] * (SETTINGS.window - 1)) == []
    assert not model.ready
    assert model.warm_up().reports_seen == SETTINGS.window - 1
    update_hst_rows(model, points(1), [T0])
    assert model.ready and model.warm_up().ready


def test_normal_points_of_the_same_kind_are_not_flagged() -> None:
    model = trained()
    assert update_hst_rows(model, points(500, seed=7), [T0] * 500) == []


def test_a_combination_never_seen_is_flagged_though_each_value_is_in_range() -> None:
    model = trained()
    odd = points(1, seed=9)
    odd[0, FEATURE_INDEX[OUT]] = 250_000 * 1.45  # the busiest traffic ...
    odd[0, FEATURE_INDEX[CPU]] = 30 * 0.55  # ... with the idlest CPU
    scores = model.score(odd)
    assert not scores.outside.any()
    assert scores.flagged[0]
    ((_, verdict),) = update_hst_rows(model, odd, [T0])
    assert set(verdict.features[:2]) == {OUT, CPU}


def test_flagged_points_are_not_learned() -> None:
    model = trained()
    wild = points(SETTINGS.window * 2, seed=4)
    wild[:, FEATURE_INDEX[OUT]] *= 10
    assert len(update_hst_rows(model, wild, [T0] * len(wild))) == len(wild)
    assert model.windows == 2  # nothing was added to the next window


def test_scoring_a_batch_is_scoring_each_point_alone() -> None:
    model = trained()
    batch = points(40, seed=11)
    batch[::7, FEATURE_INDEX[CPU]] = 99.0
    batch[3, FEATURE_INDEX[OUT]] = math.nan  # absent: imputed, not an anomaly
    together = model.score(batch)
    for i in range(len(batch)):
        alone = model.score(batch[i:i + 1])
        assert alone.score[0] == pytest.approx(together.score[i])
        assert alone.flagged[0] == together.flagged[i]
    assert together.flagged.sum() == len(range(0, 40, 7))


def test_a_stored_model_scores_as_the_original() -> None:
    model = trained()
    back = HalfSpaceTrees.from_bytes(model.to_bytes(), SETTINGS)
    batch = points(50, seed=5)
    batch[0, FEATURE_INDEX[CPU]] = 99.0
    assert np.array_equal(back.score(batch).score, model.score(batch).score)
    with pytest.raises(ValueError, match="other settings"):
        HalfSpaceTrees.from_bytes(model.to_bytes(), HstSettings(height=6))


def test_the_model_is_the_same_size_after_one_window_or_fifty() -> None:
    small, large = trained(1), trained(50)
    assert len(small.to_bytes()) == len(large.to_bytes())
    arrays = (large.dims, large.splits, large.mass, large.buffer)
    assert sum(a.nbytes for a in arrays) < 300_000


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="height"):
        HstSettings(height=30)
