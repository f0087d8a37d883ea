"""Behavioural detection: features from telemetry, rules as data, verdicts that explain.

The pure core (no database, no clock): per device, each report becomes a
:class:`FeatureVector` (rates, gauges, and what is new), and a :class:`RuleSet` turns it
into :class:`Verdict` s::

    ruleset = default_ruleset()                       # or parse_ruleset(document)
    features, feature_state = extract_features(feature_state, report)
    verdicts, rule_state = evaluate(ruleset, rule_state, features,
                                    EvaluationContext(learning_until_ms=...))

Both states are per device, immutable, and bounded; the caller keeps them between reports.
This package imports only ``core`` and ``protocol``.
"""

from fleetguard.detect.defaults import DEFAULT_RULESET_DOCUMENT, default_ruleset
from fleetguard.detect.errors import RuleSetInvalidError
from fleetguard.detect.features import (
    KNOWN_CAP,
    RATE_FEATURES,
    Destination,
    DeviceFeatureState,
    Executable,
    Feature,
    FeatureVector,
    Listener,
    NewBaseline,
    extract_features,
)
from fleetguard.detect.models import RuleSetDocument, parse_ruleset
from fleetguard.detect.rules import (
    AllowListRule,
    Comparison,
    Confidence,
    DestinationScope,
    EvaluationContext,
    Family,
    FirstSeenRule,
    Rule,
    RuleKind,
    RuleSet,
    RuleState,
    Subject,
    ThresholdRule,
    Verdict,
    evaluate,
)

__all__ = [
    "DEFAULT_RULESET_DOCUMENT",
    "KNOWN_CAP",
    "RATE_FEATURES",
    "AllowListRule",
    "Comparison",
    "Confidence",
    "Destination",
    "DestinationScope",
    "DeviceFeatureState",
    "EvaluationContext",
    "Executable",
    "Family",
    "Feature",
    "FeatureVector",
    "FirstSeenRule",
    "Listener",
    "NewBaseline",
    "Rule",
    "RuleKind",
    "RuleSet",
    "RuleSetDocument",
    "RuleSetInvalidError",
    "RuleState",
    "Subject",
    "ThresholdRule",
    "Verdict",
    "default_ruleset",
    "evaluate",
    "extract_features",
    "parse_ruleset",
]
