"""Detectors the detection service runs on each report, after the rule set.

A detector is a pure step ``(state, features, context) -> (verdicts, state)`` over one
device: learned baselines, peer comparison and multivariate models plug in here, each with
its own per-device state (None before the device's first report) that the service keeps
in memory and persists through :meth:`Detector.encode_state` / :meth:`Detector.decode_state`
(CBOR-able data: numbers, strings, lists, maps, bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fleetguard.detect.features import FeatureVector
from fleetguard.detect.rules import EvaluationContext, RuleSet, Verdict


@dataclass(frozen=True, slots=True)
class DetectionContext:
    """What a detector may know of the device and the moment besides its features."""

    device_id: str
    groups: tuple[str, ...]
    hardware_model: str | None
    ruleset: RuleSet
    evaluation: EvaluationContext
    now_ms: int  # the server's clock


class Detector(Protocol):
    """One step of the pipeline (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def detect(
        self, state: Any, features: FeatureVector, context: DetectionContext
    ) -> tuple[list[Verdict], Any]: ...

    def encode_state(self, state: Any) -> Any: ...

    def decode_state(self, data: Any) -> Any: ...


#: One report for a detector: the device's state, the report's features, the context.
DetectorInput = tuple[Any, FeatureVector, DetectionContext]


@runtime_checkable
class BatchDetector(Protocol):
    """A detector that also judges many reports at once (each of another device), as the
    service hands them over per batch: ``detect_many`` returns, per input, what ``detect``
    would (the vectorised paths of the learned modules)."""

    def detect_many(self, items: Sequence[DetectorInput]) -> list[tuple[list[Verdict], Any]]: ...


__all__ = ["BatchDetector", "DetectionContext", "Detector", "DetectorInput"]
