"""A rule set is validated as a whole before it can be activated, and a refusal names the
rule and the field at fault."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.detect import (
    AllowListRule,
    Comparison,
    Family,
    Feature,
    FirstSeenRule,
    RuleSetInvalidError,
    Subject,
    ThresholdRule,
    parse_ruleset,
)


def _document(*rules: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return {"version": version, "rules": list(rules)}


def _threshold(**overrides: Any) -> dict[str, Any]:
    return {"kind": "threshold", "id": "scan.fails", "severity": "high",
            "family": "scanning", "feature": "tcp_failures_per_s", "comparison": ">",
            "value": 2, "for_reports": 3} | overrides


def _refusal(document: dict[str, Any]) -> RuleSetInvalidError:
    with pytest.raises(RuleSetInvalidError) as caught:
        parse_ruleset(document)
    return caught.value


def test_a_valid_document_becomes_frozen_rules_of_each_kind() -> None:
    ruleset = parse_ruleset(_document(
        _threshold(),
        {"kind": "allow_list", "id": "egress", "severity": "medium", "subject": "destination",
         "destinations": [{"cidr": "203.0.113.0/24", "ports": [443]}]},
        {"kind": "first_seen", "id": "listener", "severity": "high",
         "family": "backdoor_listener", "subject": "listener"},
        version=7,
    ))
    threshold, allow, first = ruleset.rules
    assert ruleset.version == 7
    assert threshold == ThresholdRule(
        id="scan.fails", severity=Severity.HIGH, family=Family.SCANNING,
        feature=Feature.TCP_FAILURES_PER_S, comparison=Comparison.ABOVE, value=2.0,
        for_reports=3)
    assert isinstance(allow, AllowListRule)
    assert allow.destinations[0].network == ipaddress.ip_network("203.0.113.0/24")
    assert allow.destinations[0].ports == frozenset({443})
    assert allow.family is Family.POLICY  # an operator's rule need not name a family
    assert first == FirstSeenRule(id="listener", severity=Severity.HIGH,
                                  family=Family.BACKDOOR_LISTENER, subject=Subject.LISTENER)


def test_an_unknown_feature_is_refused_naming_the_rule_the_field_and_the_value() -> None:
    error = _refusal(_document(_threshold(id="cpu.hot", feature="cpu_temperature")))
    assert (error.rule_id, error.field) == ("cpu.hot", "feature")
    assert "'cpu_temperature' is unknown" in error.message
    assert "tcp_failures_per_s" in error.message  # says what would be accepted


def test_a_negative_threshold_is_refused() -> None:
    error = _refusal(_document(_threshold(value=-1)))
    assert (error.rule_id, error.field) == ("scan.fails", "value")


def test_a_malformed_cidr_is_refused_naming_the_entry() -> None:
    error = _refusal(_document({
        "kind": "allow_list", "id": "egress", "severity": "medium", "subject": "destination",
        "destinations": [{"cidr": "10.0.0.0/8"}, {"cidr": "10.300.0.0/16"}]}))
    assert (error.rule_id, error.field) == ("egress", "destinations.1.cidr")
    assert "'10.300.0.0/16' is not a network" in error.message


def test_a_cidr_with_host_bits_is_refused_as_a_likely_typo() -> None:
    error = _refusal(_document({
        "kind": "allow_list", "id": "egress", "severity": "medium", "subject": "destination",
        "destinations": [{"cidr": "10.0.0.1/8"}]}))
    assert "host bits set" in error.message


def test_a_duplicate_rule_id_is_refused_naming_it() -> None:
    error = _refusal(_document(_threshold(), _threshold(feature="cpu_percent")))
    assert (error.rule_id, error.field) == ("scan.fails", "id")
    assert "duplicate rule id 'scan.fails'" in error.message


def test_an_allow_list_field_that_does_not_fit_its_subject_is_refused() -> None:
    error = _refusal(_document({
        "kind": "allow_list", "id": "listeners", "severity": "high", "subject": "listener",
        "paths": ["/usr/*"]}))
    assert error.rule_id == "listeners"
    assert "'paths' does not apply to subject 'listener'" in error.message


def test_a_scope_on_a_first_seen_rule_not_about_destinations_is_refused() -> None:
    error = _refusal(_document({
        "kind": "first_seen", "id": "listeners", "severity": "high", "subject": "listener",
        "scope": "external"}))
    assert error.rule_id == "listeners"
    assert "'scope' does not apply to subject 'listener'" in error.message


def test_a_misspelt_field_is_an_error_not_a_silent_default() -> None:
    error = _refusal(_document(_threshold(for_report=2)))
    assert (error.rule_id, error.field) == ("scan.fails", "for_report")


def test_a_rule_without_a_kind_is_refused_and_named_by_its_position_if_it_has_no_id() -> None:
    error = _refusal(_document(_threshold(), {"severity": "high"}))
    assert (error.rule_id, error.field) == ("#2", "kind")


def test_a_document_without_a_version_is_refused() -> None:
    error = _refusal({"rules": []})
    assert error.rule_id is None
    assert error.field == "version"


def test_the_refusal_is_a_validation_error_the_api_maps_to_422() -> None:
    error = _refusal(_document(_threshold(value=-1)))
    assert isinstance(error, ValidationFailedError)
    assert (error.code, error.http_status) == ("ruleset_invalid", 422)
