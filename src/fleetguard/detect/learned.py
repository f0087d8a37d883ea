"""The learned detectors as steps of the service's pipeline (:class:`~.pipeline.Detector`).

- :class:`BaselineDetector`: each device against its own learned normal
  (:mod:`.baselines`); per-device state, persisted with the device's state (1.3 KB).
- :class:`PeerDetector`: each device against its cohort (same hardware model and same
  groups) in the same window (:mod:`.peers`); the window is shared by the cohort and
  held by the detector (in memory only: it refills within one window after a restart).
- :class:`HstDetector`: Half-Space Trees per cohort (:mod:`.hst`), held by the detector,
  at most ``max_cohorts`` models (the least recently used dropped first).

A detector here judges one report at a time: the service runs reports one by one in
arrival order (the vectorised batch paths of those modules are for the benchmark).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from fleetguard.detect.baselines import BaselineSettings, BaselineState, update_baseline
from fleetguard.detect.features import FeatureVector
from fleetguard.detect.hst import HalfSpaceTrees, HstSettings, update_hst
from fleetguard.detect.peers import PeerSettings, PeerWindow, observe_peer, peer_verdicts
from fleetguard.detect.pipeline import DetectionContext
from fleetguard.detect.rules import Verdict


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
        cohort = cohort_of(context)
        observe_peer(self.window, cohort, context.device_id, features)
        return peer_verdicts(self.window, cohort, context.device_id, features), None

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

    def encode_state(self, state: Any) -> Any:
        return None

    def decode_state(self, data: Any) -> Any:
        return None


def learned_detectors() -> list[BaselineDetector | PeerDetector | HstDetector]:
    """The learned detectors with their modules' default settings."""
    return [BaselineDetector(), PeerDetector(), HstDetector()]


__all__ = ["BaselineDetector", "HstDetector", "PeerDetector", "cohort_of", "learned_detectors"]
