"""The learned detectors as steps of the service's pipeline (:class:`~.pipeline.Detector`).

- :class:`BaselineDetector`: each device against its own learned normal
  (:mod:`.baselines`); per-device state, persisted with the device's state (1.3 KB).
- :class:`PeerDetector`: each device against its cohort (same hardware model and same
  groups) in the same window (:mod:`.peers`); the window is shared by the cohort and
  held by the detector (in memory only: it refills within one window after a restart).
  A device with no hardware model registered has no peers: cameras, sensors and gateways
  in one cohort flagged a third of 1,000 benign simulated devices.
- :class:`HstDetector`: Half-Space Trees per cohort (:mod:`.hst`), held by the detector,
  at most ``max_cohorts`` models (the least recently used dropped first).

Each also judges a batch at once (``detect_many``, the modules' vectorised paths): the
service hands each detector the reports of a batch, one per device per call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from fleetguard.detect.baselines import (
    BaselineSettings,
    BaselineState,
    feature_matrix,
    new_table,
    update_baseline,
    update_baseline_rows,
)
from fleetguard.detect.features import FeatureVector
from fleetguard.detect.hst import HalfSpaceTrees, HstSettings, update_hst, update_hst_rows
from fleetguard.detect.peers import (
    PeerSettings,
    PeerWindow,
    observe_peer,
    peer_verdicts,
    peer_verdicts_rows,
)
from fleetguard.detect.pipeline import DetectionContext, DetectorInput
from fleetguard.detect.rules import Verdict

Found = list[tuple[list[Verdict], Any]]


def _by_cohort(items: Sequence[DetectorInput], *,
               modelled_only: bool = False) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, (_, _, context) in enumerate(items):
        if not (modelled_only and context.hardware_model is None):
            groups.setdefault(cohort_of(context), []).append(i)
    return groups


def cohort_of(context: DetectionContext) -> str:
    """The devices a device is compared with: same hardware model and same groups."""
    return f"{context.hardware_model or '-'}|{','.join(context.groups)}"


class BaselineDetector:
    name = "baseline"

    def __init__(self, settings: BaselineSettings | None = None) -> None:
        self.settings = settings or BaselineSettings()

    def detect(self, state: Any, features: FeatureVector, context: DetectionContext
               ) -> tuple[list[Verdict], Any]:
        previous = state if isinstance(state, BaselineState) else None
        return update_baseline(previous, features, self.settings)

    def detect_many(self, items: Sequence[DetectorInput]) -> Found:
        before = [s if isinstance(s, BaselineState) else None for s, _, _ in items]
        tables = np.stack([s.table if s is not None else new_table(1)[0] for s in before])
        reports = np.array([s.reports if s is not None else 0 for s in before], np.int64)
        x = feature_matrix([f for _, f, _ in items])
        at = np.array([f.collected_at_ms for _, f, _ in items], np.int64)
        flagged = update_baseline_rows(tables, reports, np.arange(len(items)), x, at,
                                       self.settings)
        out: Found = []
        for i in range(len(items)):
            table = tables[i].copy()
            table.flags.writeable = False
            out.append(([], BaselineState(int(reports[i]), table)))
        for i, verdict in flagged:
            out[i][0].append(verdict)
        return out

    def encode_state(self, state: Any) -> Any:
        return state.to_bytes() if isinstance(state, BaselineState) else None

    def decode_state(self, data: Any) -> Any:
        return BaselineState.from_bytes(bytes(data)) if data else None


class PeerDetector:
    name = "peer"

    def __init__(self, settings: PeerSettings | None = None) -> None:
        self.window = PeerWindow(settings)

    def detect(self, state: Any, features: FeatureVector, context: DetectionContext
               ) -> tuple[list[Verdict], Any]:
        if context.hardware_model is None:
            return [], None
        cohort = cohort_of(context)
        observe_peer(self.window, cohort, context.device_id, features)
        return peer_verdicts(self.window, cohort, context.device_id, features), None

    def detect_many(self, items: Sequence[DetectorInput]) -> Found:
        out: Found = [([], None) for _ in items]
        for cohort, rows in _by_cohort(items, modelled_only=True).items():
            x = feature_matrix([items[i][1] for i in rows])
            ids = [items[i][2].device_id for i in rows]
            for j, i in enumerate(rows):
                self.window.observe(cohort, ids[j], x[j], items[i][1].collected_at_ms)
            at = max(items[i][1].collected_at_ms for i in rows)
            for j, verdict in peer_verdicts_rows(self.window, cohort, ids, x, at):
                out[rows[j]][0].append(verdict)
        return out

    def encode_state(self, state: Any) -> Any:
        return None

    def decode_state(self, data: Any) -> Any:
        return None


class HstDetector:
    name = "model"

    def __init__(self, settings: HstSettings | None = None, max_cohorts: int = 1000) -> None:
        self.settings = settings or HstSettings()
        self.max_cohorts = max_cohorts
        self._models: OrderedDict[str, HalfSpaceTrees] = OrderedDict()

    def _model(self, cohort: str) -> HalfSpaceTrees:
        model = self._models.get(cohort)
        if model is None:
            model = self._models[cohort] = HalfSpaceTrees(self.settings)
            while len(self._models) > self.max_cohorts:
                self._models.popitem(last=False)
        self._models.move_to_end(cohort)
        return model

    def detect(self, state: Any, features: FeatureVector, context: DetectionContext
               ) -> tuple[list[Verdict], Any]:
        [verdicts] = update_hst(self._model(cohort_of(context)), [features])
        return verdicts, None

    def detect_many(self, items: Sequence[DetectorInput]) -> Found:
        out: Found = [([], None) for _ in items]
        for cohort, rows in _by_cohort(items).items():
            x = feature_matrix([items[i][1] for i in rows])
            at = [items[i][1].collected_at_ms for i in rows]
            for j, verdict in update_hst_rows(self._model(cohort), x, at):
                out[rows[j]][0].append(verdict)
        return out

    def encode_state(self, state: Any) -> Any:
        return None

    def decode_state(self, data: Any) -> Any:
        return None


def learned_detectors() -> list[BaselineDetector | PeerDetector | HstDetector]:
    """The learned detectors with their modules' default settings."""
    return [BaselineDetector(), PeerDetector(), HstDetector()]


__all__ = ["BaselineDetector", "HstDetector", "PeerDetector", "cohort_of", "learned_detectors"]
