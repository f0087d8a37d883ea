"""On any points (huge, zero, absent), the model's scores are finite and not negative,
a point's score does not depend on the batch it came in, and the model does not grow
(beyond naming which features its trees split)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fleetguard.detect.baselines import FEATURES
from fleetguard.detect.hst import HalfSpaceTrees, HstSettings, update_hst_rows

from .support import T0

SETTINGS = HstSettings(window=16, trees=5, height=6)
value = st.one_of(st.just(np.nan), st.floats(min_value=0, max_value=1e15))
batches = arrays(np.float64, st.tuples(st.integers(1, 40), st.just(len(FEATURES))),
                 elements=value)


@settings(max_examples=60, deadline=None)
@given(st.lists(batches, min_size=1, max_size=6))
def test_scores_are_finite_and_batches_do_not_matter_and_the_model_does_not_grow(
    stream: list[np.ndarray],
) -> None:
    model = HalfSpaceTrees(SETTINGS)
    size = len(model.to_bytes())
    for batch in stream:
        scores = model.score(batch)
        assert np.isfinite(scores.score).all() and (scores.score >= 0).all()
        for i in range(0, len(batch), 7):
            alone = model.score(batch[i:i + 1])
            assert alone.flagged[0] == scores.flagged[i]
            assert alone.score[0] == scores.score[i]
        found = update_hst_rows(model, batch, [T0] * len(batch))
        assert all(0 <= row < len(batch) for row, _ in found)
        assert model.ready or not found
    assert len(model.to_bytes()) <= size + 8 * len(FEATURES)  # at most: every feature split
