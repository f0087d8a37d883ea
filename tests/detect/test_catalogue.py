"""docs/detection.md names every feature and every default rule, so an analyst reading an
alarm can look up what it means."""

from __future__ import annotations

from pathlib import Path

from fleetguard.detect import Feature, default_ruleset

CATALOGUE = (Path(__file__).resolve().parents[2] / "docs" / "detection.md").read_text()


def test_every_feature_is_in_the_catalogue() -> None:
    assert [f.value for f in Feature if f"| `{f.value}` |" not in CATALOGUE] == []


def test_every_default_rule_is_in_the_catalogue_with_its_family_and_severity() -> None:
    missing = [
        rule.id for rule in default_ruleset().rules
        if f"| `{rule.id}` | {rule.kind.value} | {rule.family.value} | {rule.severity.value} |"
        not in CATALOGUE
    ]
    assert missing == []
