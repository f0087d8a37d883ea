"""A multivariate online model: Half-Space Trees on numpy, scoring many devices at once.

Half-Space Trees (Tan, Ting and Liu, IJCAI 2011): ``trees`` random binary trees of fixed
``height``, each node splitting one random feature at the middle of the node's work space;
a point's score is the mass (how many points of the reference window fell in the same
node) times ``2 ** depth`` at the deepest node it reaches with at least ``size_limit`` of
mass. Normal points fall where the reference was dense; an anomaly reaches an empty node
early and scores near 0. Mass profiles are window-based: the model learns ``window`` points,
then they become the reference and the next window fills.

This implementation, one model per cohort (devices of one model and group: what they do
together is the normal learned), differs from River's in three ways that matter here:

- **Vectorised**: the trees are arrays (split feature and value per node, mass per node);
  scoring a batch of B points walks all trees one level at a time, ``height`` steps of a
  few numpy operations over ``trees x B`` elements (:func:`update_hst_rows`).
- **Feature ranges from the reference**: features are taken as ``log1p`` (they span bytes
  per second and counts); each window's range of each feature, padded by half its width
  (at least ``min_pad``), is the *normal box*. The trees are built once in the unit cube
  and the box maps onto it, so a new window's range costs no rebuild, only its masses.
  A point outside the box in any feature has no mass in any tree: scored 0. With 24
  features and height 8 a tree's path splits a given feature on 30 % of the trees only,
  so without the box a single feature far out (a pinned CPU) would lower the score little;
  the box makes it certain, and the trees catch combinations that each stay in range.
- **Splits on what varies**: the trees are built when the first window is full, splitting
  only features that varied in it (on devices, most counters sit at 0: a split of one is
  a level wasted), and rebuilt when a window shows a new one varying. A feature present in
  less than an eighth of the window has no box and is not judged: the first reports of a
  new fleet carry no rates, and must not make every later report's rates look odd.
- **Flagged points are not learned** (they do not become the next window's normal), and
  points the operator accepted (feedback, :meth:`HalfSpaceTrees.accepting`) are normal.

Warm-up: the first ``window`` points of the cohort (no verdict before). Memory: 280 KB per
model with the defaults (25 trees of height 10: split features int16 51 KB, split values
float32 102 KB, masses uint16 102 KB, the window's points 25 KB; ``to_bytes`` 284 KB), the
same after one window or a million; per device, that divided by the cohort's size (the
benchmark prints it). Height 10 rather than River's 8: with the 2-3 features that move
together on a device, a combination never seen (the busiest traffic with the idlest CPU,
window 128) scored 0.015 of normal at height 10, below the lowest of 5,000 normal points
(0.042); at height 8 it scored 0.13, inside the normal ones (lowest 0.18): measured by
hand on the points of ``tests/detect/test_hst.py``.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetguard.detect.baselines import (
    DEFAULT_FLOORS,
    FEATURES,
    NOT_FLAGGED_ABOVE,
    FloatArray,
    WarmUp,
    column_median,
    family_of,
    feature_matrix,
    floors_array,
    learned_severity,
)
from fleetguard.detect.features import Feature, FeatureVector
from fleetguard.detect.rules import Comparison, Confidence, RuleKind, Verdict

F = len(FEATURES)
MAX_ACCEPTED = 64  # points an operator marked normal, kept per model
MAX_NAMED = 8  # features named in a verdict
_FLOORS = floors_array(DEFAULT_FLOORS)  # the baselines' least widths, in each feature's unit
NOT_JUDGED_ABOVE = NOT_FLAGGED_ABOVE | {
    Feature.PACKETS_OUT_PER_S, Feature.CPU_PERCENT, Feature.TOP_PROCESS_CPU_PERCENT}


@dataclass(frozen=True, slots=True)
class HstSettings:
    trees: int = 25
    height: int = 10
    window: int = 128  # points per mass profile (of the whole cohort)
    size_limit: float = 0.1  # share of the window: a node with less mass ends a walk
    threshold: float = 0.025  # flagged below this share of the reference's median score
    pad: float = 0.5  # the normal box: the window's range padded by this share of it
    min_pad: float = 0.5  # ... and by at least this (log1p units: +65 %; 1 -> 2 is in)
    accept_radius: float = 0.25  # an accepted point covers this much around it (log1p)
    floor_widths: float = 6.0  # the box holds at least this many baseline floors of slack
    seed: int = 0

    def __post_init__(self) -> None:
        if not (1 <= self.height <= 14 and self.trees >= 1 and 8 <= self.window <= 65_535):
            raise ValueError("height 1..14, at least one tree and a window of 8..65,535")
        if not (0 < self.threshold < 1 and 0 < self.size_limit < 1):
            raise ValueError("threshold and size_limit are shares in (0, 1)")


@dataclass(frozen=True, slots=True)
class HstScores:
    score: FloatArray  # (B,) mass relative to the reference's median; 0: nowhere normal
    outside: npt.NDArray[np.bool_]  # (B, F) beyond the normal box
    flagged: npt.NDArray[np.bool_]  # (B,)
    t: FloatArray  # (B, F) the points, log1p, absent ones at the reference's median
    raw: FloatArray  # (B, F) the points, log1p, absent ones NaN (what is learned)


def _transform(x: FloatArray) -> FloatArray:
    return np.log1p(np.maximum(x, 0.0))


def _build(settings: HstSettings, varying: npt.NDArray[np.intp]
           ) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float32]]:
    """Random trees in the unit cube: split feature (one of ``varying``) and split value
    of each internal node."""
    rng = np.random.default_rng(settings.seed)
    trees, inner = settings.trees, 2 ** settings.height - 1
    sq = rng.uniform(0.0, 1.0, (trees, F))
    reach = 2 * np.maximum(sq, 1 - sq)
    low = np.empty((trees, 2 * inner + 1, F))
    high = np.empty_like(low)
    low[:, 0], high[:, 0] = sq - reach, sq + reach
    dims = varying[rng.integers(0, varying.size, (trees, inner))]
    values = np.empty((trees, inner))
    every = np.arange(trees)
    for node in range(inner):  # breadth first: a node's bounds are set before its children
        q = dims[:, node]
        split = (low[every, node, q] + high[every, node, q]) / 2
        values[:, node] = split
        left, right = 2 * node + 1, 2 * node + 2
        low[:, left], high[:, left] = low[:, node], high[:, node]
        low[:, right], high[:, right] = low[:, node], high[:, node]
        high[every, left, q] = split
        low[every, right, q] = split
    return dims.astype(np.int16), values.astype(np.float32)


class HalfSpaceTrees:
    """One cohort's model (mutable; :meth:`accepting` and :meth:`copy` give new ones)."""

    def __init__(self, settings: HstSettings | None = None) -> None:
        self.settings = s = settings or HstSettings()
        self.dims, self.splits = _build(s, np.arange(F))  # rebuilt on the first window
        self.mass = np.zeros((s.trees, 2 ** (s.height + 1) - 1), np.uint16)  # <= window
        self.buffer = np.full((s.window, F), np.nan)  # the window being learned, log1p
        self.filled = 0
        self.windows = 0  # reference windows made so far
        self.box_low = np.zeros(F)  # judged: outside it is not normal
        self.box_high = np.ones(F)
        self.unit_low = np.zeros(F)  # the trees' unit cube (the box without the slack)
        self.unit_high = np.ones(F)
        self.center = np.zeros(F)  # the reference's median: stands in for an absent value
        self.level = 1.0  # the reference's median score
        self.accept_low = np.full(F, np.inf)
        self.accept_high = np.full(F, -np.inf)
        self.accepted = np.zeros((0, F))
        self.varying = np.zeros(0, np.intp)  # the features the trees split
        self.known = np.zeros(F, bool)  # features present enough in the reference to judge
        # Above the box, not judged: inbound traffic and its acknowledgements (a download),
        # and CPU (an install's busy minute): baselines and peers judge CPU over two
        # reports; the trees still weigh them in combination.
        self.judged_above = np.array([f not in NOT_JUDGED_ABOVE for f in FEATURES])

    @property
    def ready(self) -> bool:
        return self.windows > 0

    def warm_up(self) -> WarmUp:
        seen = self.settings.window if self.ready else self.filled
        return WarmUp(seen, self.settings.window)

    def copy(self) -> HalfSpaceTrees:
        return copy.deepcopy(self)

    def _unit(self, t: FloatArray) -> npt.NDArray[np.float32]:
        width = np.maximum(self.unit_high - self.unit_low, 1e-9)
        return np.asarray((t - self.unit_low) / width, np.float32)

    def _raw_scores(self, t: FloatArray) -> FloatArray:
        """Mean over trees of mass x 2^depth where each point's walk ends: (B,). At a
        split on a feature the point does not have (NaN), it goes where more of the
        reference went: the most likely place for a point like it.

        Every array is indexed flat (``take`` on tree offset + node), the fastest gather
        numpy has; a level where every walk has ended is not computed."""
        s = self.settings
        unit = self._unit(t)
        absent = np.isnan(unit)
        any_absent = bool(absent.any())
        unit_flat, absent_flat = unit.ravel(), absent.ravel()
        mass, dims, splits = self.mass.ravel(), self.dims.ravel(), self.splits.ravel()
        limit = s.size_limit * s.window
        points = (np.arange(t.shape[0]) * F)[None, :]
        at_node = (np.arange(s.trees) * self.mass.shape[1])[:, None]
        at_inner = (np.arange(s.trees) * self.dims.shape[1])[:, None]
        node = np.zeros((s.trees, t.shape[0]), np.intp)
        score = np.zeros(node.shape, np.float64)
        done = np.zeros(node.shape, bool)
        for depth in range(s.height):
            here = mass.take(at_node + node)
            ends = ~done & (here < limit)
            score = np.where(ends, here * 2.0 ** depth, score)
            done |= ends
            if done.all():
                return np.asarray(score.mean(axis=0), np.float64)
            inner = at_inner + node
            cell = points + dims.take(inner)
            right = unit_flat.take(cell) >= splits.take(inner)
            if any_absent:
                likelier = mass.take(at_node + 2 * node + 2) > mass.take(at_node + 2 * node + 1)
                right = np.where(absent_flat.take(cell), likelier, right)
            node = 2 * node + 1 + right
        leaf = mass.take(at_node + node) * 2.0 ** s.height
        return np.asarray(np.where(done, score, leaf).mean(axis=0), np.float64)

    def _impute(self, x: FloatArray) -> FloatArray:
        t = _transform(x)
        return np.where(np.isnan(t), self.center[None, :], t)

    def score(self, x: FloatArray) -> HstScores:
        """Score raw feature rows (B, F; NaN absent). Nothing is flagged before warm-up."""
        raw = _transform(x)
        t = np.where(np.isnan(raw), self.center[None, :], raw)
        low = np.minimum(self.box_low, self.accept_low)
        high = np.maximum(self.box_high, self.accept_high)
        outside = ((t < low) | ((t > high) & self.judged_above)) & self.known[None, :]
        if not self.ready:
            zeros = np.zeros(t.shape[0])
            return HstScores(zeros, outside, np.zeros(t.shape[0], bool), t, raw)
        score = self._raw_scores(raw) / self.level
        score = np.where(outside.any(axis=1), 0.0, score)
        flagged = score < self.settings.threshold
        if self.accepted.shape[0] and flagged.any():
            # Near on what the trees split: the rest is judged by the (widened) box.
            v = self.varying if self.varying.size else np.arange(F)
            near = np.abs(t[:, None, v] - self.accepted[None, :, v]).max(axis=2)
            covered = (near <= self.settings.accept_radius).any(axis=1)
            flagged &= ~(covered & ~outside.any(axis=1))
        return HstScores(score, outside, flagged, t, raw)

    def learn(self, t: FloatArray) -> None:
        """Add points (log1p, NaN absent) to the window; a full window becomes the
        reference."""
        start = 0
        while start < t.shape[0]:
            room = self.settings.window - self.filled
            chunk = t[start:start + room]
            self.buffer[self.filled:self.filled + chunk.shape[0]] = chunk
            self.filled += chunk.shape[0]
            start += chunk.shape[0]
            if self.filled == self.settings.window:
                self._roll()

    def _roll(self) -> None:
        """The window becomes the reference: its box, its masses, its median score."""
        s, points = self.settings, self.buffer
        low = np.nan_to_num(np.fmin.reduce(points, axis=0))  # a feature never present: 0
        high = np.nan_to_num(np.fmax.reduce(points, axis=0))
        # A feature judged needs a range: present in an eighth of the window at least (the
        # first reports of a fleet have no rates; their window must not make rates odd).
        present = np.count_nonzero(~np.isnan(points), axis=0)
        self.known = present >= max(4, s.window // 8)
        # Split only what varied: a feature that never moved is all in its box's pad, and
        # a split of it would be a level of every tree wasted. Rebuilt when that grows.
        varying = np.union1d(self.varying, np.flatnonzero(self.known & (high > low)))
        if self.windows == 0 or varying.size != self.varying.size:
            self.varying = varying.astype(np.intp)
            self.dims, self.splits = _build(s, self.varying if varying.size else np.arange(F))
        pad = np.maximum(s.pad * (high - low), s.min_pad)
        # In its own unit too a box has slack: a sensor's 40 B/s going to 8 KB/s (a
        # download's acknowledgements) is far in log1p, and nothing in bytes.
        slack = s.floor_widths * _FLOORS
        self.unit_low, self.unit_high = low - pad, high + pad
        self.box_low = np.minimum(low - pad, np.log1p(np.maximum(np.expm1(low) - slack, 0.0)))
        self.box_high = np.maximum(high + pad, np.log1p(np.expm1(high) + slack))
        self.center = np.nan_to_num(column_median(points)[0])
        self.mass[:] = self._masses(points)
        # The median score of the window's own points (64 of them, evenly taken, are
        # enough for a median, and cost a third of a window's scoring).
        sample = points[:: max(1, points.shape[0] // 64)]
        self.level = max(float(np.median(self._raw_scores(sample))), 1e-9)
        self.windows += 1
        self.filled = 0

    def _masses(self, points: FloatArray) -> npt.NDArray[np.uint16]:
        """How many of ``points`` reach each node of each tree (a point counts down to its
        first split on a feature it does not have)."""
        s = self.settings
        unit = self._unit(points)
        unit_flat = unit.ravel()
        dims, splits = self.dims.ravel(), self.splits.ravel()
        size = self.mass.size
        at_node = (np.arange(s.trees) * self.mass.shape[1])[:, None]
        at_inner = (np.arange(s.trees) * self.dims.shape[1])[:, None]
        rows = (np.arange(points.shape[0]) * F)[None, :]
        node = np.zeros((s.trees, points.shape[0]), np.intp)
        alive = np.ones(node.shape, bool)
        counts = np.zeros(size, np.int64)
        for _ in range(s.height):
            counts += np.bincount((at_node + node)[alive], minlength=size)
            inner = at_inner + node
            value = unit_flat.take(rows + dims.take(inner))
            alive &= ~np.isnan(value)
            node = 2 * node + 1 + (value >= splits.take(inner))
        counts += np.bincount((at_node + node)[alive], minlength=size)
        return counts.reshape(self.mass.shape).astype(np.uint16)

    def accepting(self, x: FloatArray) -> HalfSpaceTrees:
        """A copy that takes the raw point ``x`` (F,) as normal: what feedback teaches."""
        model = self.copy()
        t = model._impute(x[None, :])[0]
        margin = self.settings.accept_radius
        model.accept_low = np.where(t < model.box_low, np.minimum(model.accept_low, t - margin),
                                    model.accept_low)
        model.accept_high = np.where(t > model.box_high,
                                     np.maximum(model.accept_high, t + margin), model.accept_high)
        model.accepted = np.vstack([model.accepted, t[None, :]])[-MAX_ACCEPTED:]
        return model

    def to_bytes(self) -> bytes:
        """The model's numbers (``numpy.savez``, no pickles); settings are the caller's."""
        out = io.BytesIO()
        np.savez(out, dims=self.dims, splits=self.splits, mass=self.mass, buffer=self.buffer,
                 counts=np.array([self.filled, self.windows]), box_low=self.box_low,
                 box_high=self.box_high, unit_low=self.unit_low, unit_high=self.unit_high,
                 center=self.center, level=np.array([self.level]),
                 accept_low=self.accept_low, accept_high=self.accept_high,
                 accepted=self.accepted, varying=self.varying, known=self.known)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, settings: HstSettings | None = None) -> HalfSpaceTrees:
        model = cls(settings)
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            if saved["mass"].shape != model.mass.shape:
                raise ValueError("the stored model was made with other settings")
            model.dims, model.splits, model.mass = saved["dims"], saved["splits"], saved["mass"]
            model.buffer = saved["buffer"]
            model.filled, model.windows = (int(n) for n in saved["counts"])
            model.box_low, model.box_high = saved["box_low"], saved["box_high"]
            model.unit_low, model.unit_high = saved["unit_low"], saved["unit_high"]
            model.center, model.level = saved["center"], float(saved["level"][0])
            model.accept_low, model.accept_high = saved["accept_low"], saved["accept_high"]
            model.accepted, model.varying = saved["accepted"], saved["varying"]
            model.known = saved["known"]
        return model


def _explained(model: HalfSpaceTrees, t: FloatArray, outside: npt.NDArray[np.bool_]
               ) -> list[int]:
    """The features behind a flagged point, most telling first: those beyond the box
    (by how far, in box widths), else the three farthest from the reference's median."""
    width = np.maximum(model.unit_high - model.unit_low, 1e-9)
    if outside.any():
        beyond = np.maximum(t - model.box_high, model.box_low - t) / width
        order = np.argsort(-np.where(outside, beyond, -np.inf))
        return [int(c) for c in order[: int(outside.sum())]][:MAX_NAMED]
    return [int(c) for c in np.argsort(-np.abs(t - model.center) / width)[:3]]


def _model_verdict(model: HalfSpaceTrees, scores: HstScores, row: int, x: FloatArray,
                   at_ms: int) -> Verdict:
    columns = _explained(model, scores.t[row], scores.outside[row])
    top = columns[0]
    feature = FEATURES[top]
    observed = _value(x, scores.t, row, top)
    low = max(float(np.expm1(model.box_low[top])), 0.0)
    high = float(np.expm1(model.box_high[top]))
    out_of_box = bool(scores.outside[row].any())
    above = observed > high if out_of_box else scores.t[row, top] > model.center[top]
    family = family_of(feature, bool(above)) if out_of_box else family_of(feature, False)
    score = float(scores.score[row])
    mature = model.windows >= 2
    confidence = (Confidence.HIGH if out_of_box and mature else
                  Confidence.MEDIUM if out_of_box or score < model.settings.threshold / 4 else
                  Confidence.LOW)
    named = ", ".join(
        f"{FEATURES[c].value} {_value(x, scores.t, row, c):g} "
        f"(normal {max(float(np.expm1(model.box_low[c])), 0.0):.3g}.."
        f"{float(np.expm1(model.box_high[c])):.3g})" for c in columns)
    return Verdict(
        rule_id="model.hst", kind=RuleKind.MODEL, family=family,
        severity=learned_severity(confidence, family), collected_at_ms=at_ms,
        since_ms=at_ms, reports=1,
        summary=f"unlike its cohort's learned normal (score {score:.3f}): {named}",
        description="outside what devices of its model and group do together",
        features=tuple(FEATURES[c] for c in columns), observed=observed,
        comparison=Comparison.ABOVE if above else Comparison.BELOW,
        threshold=high if above else low, confidence=confidence,
        expected_low=low, expected_high=high)


def _value(x: FloatArray, t: FloatArray, row: int, column: int) -> float:
    value = float(x[row, column])
    return value if not math.isnan(value) else float(np.expm1(t[row, column]))


def update_hst_rows(model: HalfSpaceTrees, x: FloatArray,
                    collected_at_ms: Sequence[int] | npt.NDArray[np.int64]
                    ) -> list[tuple[int, Verdict]]:
    """The vectorised path: score a batch of raw feature rows (B, F; NaN absent) in one
    walk of the trees, then learn the rows that were not flagged. Returns (row, verdict)."""
    scores = model.score(x)
    found = [(row, _model_verdict(model, scores, row, x, int(collected_at_ms[row])))
             for row in (int(i) for i in np.flatnonzero(scores.flagged))]
    model.learn(scores.raw[~scores.flagged])
    return found


def update_hst(model: HalfSpaceTrees, vectors: Sequence[FeatureVector]) -> list[list[Verdict]]:
    """One batch of reports of a cohort: each report's verdicts, in order."""
    found: list[list[Verdict]] = [[] for _ in vectors]
    if not vectors:
        return found
    at = [v.collected_at_ms for v in vectors]
    for row, verdict in update_hst_rows(model, feature_matrix(vectors), at):
        found[row].append(verdict)
    return found


def hst_band(model: HalfSpaceTrees, feature: Feature) -> tuple[float, float] | None:
    """The cohort's normal box of one feature (in its own unit), or None before warm-up."""
    c = FEATURES.index(feature)
    if not model.ready or not model.known[c]:
        return None
    return (max(float(np.expm1(model.box_low[c])), 0.0), float(np.expm1(model.box_high[c])))


__all__ = [
    "HalfSpaceTrees",
    "HstScores",
    "HstSettings",
    "hst_band",
    "update_hst",
    "update_hst_rows",
]
