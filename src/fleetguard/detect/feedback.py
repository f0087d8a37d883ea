"""Feedback: an alarm an operator marked false positive changes what is flagged next. Pure.

Each learned kind has its own way of not flagging the same thing again, and each returns
a new state (the old one is untouched, so the caller stores the new one and audits it):

- a **baseline** verdict: the device's band of that feature is widened for good to take
  the observed value and half as far again (:func:`accept_baseline_false_positive`);
  the device's own normal otherwise keeps learning as before.
- a **peer** verdict: that feature of that device is not judged against its peers for a
  while (seven days unless told; :func:`exempt_peer_false_positive`): the device is
  meant to differ from its cohort, and its own baseline still watches it.
- a **model** verdict: the cohort's model takes the report's point as normal: the
  features outside its normal box are widened to it, and points near it are not flagged
  (:func:`accept_model_false_positive`).

A verdict of another kind, or one that names no feature or value, is refused with a
:class:`~fleetguard.core.errors.ValidationFailedError` (code ``feedback_not_applicable``).
"""

from __future__ import annotations

from fleetguard.core.errors import ValidationFailedError
from fleetguard.detect.baselines import BaselineState, accept_value, feature_row
from fleetguard.detect.features import FeatureVector
from fleetguard.detect.hst import HalfSpaceTrees
from fleetguard.detect.peers import PeerExemptions
from fleetguard.detect.rules import RuleKind, Verdict

PEER_EXEMPTION_MS = 7 * 24 * 3_600_000
ACCEPT_MARGIN = 0.5  # of the distance from the mean, beyond the accepted value


def _refuse(message: str) -> ValidationFailedError:
    return ValidationFailedError(message, field="verdict", code="feedback_not_applicable")


def _expect(verdict: Verdict, kind: RuleKind) -> None:
    if verdict.kind is not kind:
        raise _refuse(f"a {verdict.kind.value} verdict is not a {kind.value} verdict")
    if not verdict.features:
        raise _refuse(f"verdict {verdict.rule_id!r} names no feature")


def accept_baseline_false_positive(state: BaselineState, verdict: Verdict,
                                   margin: float = ACCEPT_MARGIN) -> BaselineState:
    """The device's baseline that takes the verdict's value as normal from now on."""
    _expect(verdict, RuleKind.BASELINE)
    if verdict.observed is None:
        raise _refuse(f"verdict {verdict.rule_id!r} has no observed value")
    return accept_value(state, verdict.features[0], verdict.observed, margin)


def exempt_peer_false_positive(
    exemptions: PeerExemptions | None, device_id: str, verdict: Verdict, *,
    duration_ms: int = PEER_EXEMPTION_MS,
) -> PeerExemptions:
    """Exemptions under which the verdict's device and feature are not judged against
    peers for ``duration_ms`` from the verdict's report."""
    _expect(verdict, RuleKind.PEER)
    if duration_ms <= 0:
        raise _refuse("an exemption lasts a positive time")
    current = exemptions if exemptions is not None else PeerExemptions()
    until = verdict.collected_at_ms + duration_ms
    for feature in verdict.features:
        current = current.with_exemption(device_id, feature, until, verdict.collected_at_ms)
    return current


def accept_model_false_positive(model: HalfSpaceTrees, features: FeatureVector,
                                verdict: Verdict) -> HalfSpaceTrees:
    """A copy of the cohort's model that takes the report behind the verdict as normal."""
    _expect(verdict, RuleKind.MODEL)
    if features.collected_at_ms != verdict.collected_at_ms:
        raise _refuse("the features given are not those of the verdict's report")
    return model.accepting(feature_row(features))


__all__ = [
    "PEER_EXEMPTION_MS",
    "accept_baseline_false_positive",
    "accept_model_false_positive",
    "exempt_peer_false_positive",
]
