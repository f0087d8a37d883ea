"""/api/v1/detection/rulesets: the fleet's and groups' rule sets, versioned, validated before
activation, diffed, dry-run, and audited."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from fleetguard.auditlog import list_audit_entries
from fleetguard.detect import DEFAULT_RULESET_DOCUMENT
from fleetguard.operators import Role
from fleetguard.store import Database
from tests.support import LoggedIn

FLEET = "/api/v1/detection/rulesets/fleet"


@pytest.fixture
def admin(login_as: Callable[[Role], LoggedIn]) -> LoggedIn:
    return login_as(Role.ADMIN)


@pytest.fixture
def operator(login_as: Callable[[Role], LoggedIn]) -> LoggedIn:
    return login_as(Role.OPERATOR)


def stricter() -> dict[str, Any]:
    """The shipped rules with the CPU rule tightened and a rule of the operator's own."""
    document = copy.deepcopy(DEFAULT_RULESET_DOCUMENT)
    del document["version"]
    for rule in document["rules"]:
        if rule["id"] == "miner.cpu-pinned":
            rule["value"] = 80
    document["rules"].append({"kind": "threshold", "id": "ops.many-processes",
                              "severity": "low", "feature": "process_count", "value": 400})
    return document


def test_the_fleet_runs_the_shipped_default_until_an_operator_activates_one(
    operator: LoggedIn
) -> None:
    r = operator.client.get(FLEET)
    assert r.status_code == 200
    body = r.json()
    assert (body["version"], body["active"], body["activated_at"]) == (1, True, None)
    assert body["rules"] == len(DEFAULT_RULESET_DOCUMENT["rules"])


def test_an_activation_becomes_the_next_version_and_is_audited_with_its_actor(
    sqlite_db: Database, admin: LoggedIn
) -> None:
    r = admin.client.put(FLEET, json=stricter(), headers=admin.headers())
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["active"]) == (2, True)
    versions = admin.client.get(f"{FLEET}/versions").json()
    assert [(v["version"], v["active"]) for v in versions] == [(2, True), (1, False)]
    with sqlite_db.session() as session:
        [entry] = list_audit_entries(session, action="detection.ruleset.activate")
    assert entry.actor == f"operator:{admin.username}"
    assert entry.details["changed"] == ["miner.cpu-pinned"]


def test_an_invalid_rule_set_is_refused_naming_the_rule_and_field(admin: LoggedIn) -> None:
    document = stricter()
    document["rules"][0]["feature"] = "bytes_per_fortnight"
    r = admin.client.put(FLEET, json=document, headers=admin.headers())
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "ruleset_invalid" and error["field"] == "feature"
    assert "scan.refused-connections" in error["message"]
    assert admin.client.get(FLEET).json()["version"] == 1  # nothing activated


def test_two_versions_diff_rule_by_rule_and_field_by_field(admin: LoggedIn) -> None:
    admin.client.put(FLEET, json=stricter(), headers=admin.headers())
    diff = admin.client.get(f"{FLEET}/diff", params={"from": 1, "to": 2}).json()
    assert diff["added"] == ["ops.many-processes"] and diff["removed"] == []
    assert diff["changed"] == [{"rule_id": "miner.cpu-pinned",
                                "fields": {"value": {"before": 90.0, "after": 80.0}}}]
    assert admin.client.get(f"{FLEET}/versions/1").json()["activated_by"].startswith("fleetguard")
    r = admin.client.get(f"{FLEET}/versions/9")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ruleset_version_not_found"


def test_an_activation_over_a_version_someone_else_made_is_a_409(admin: LoggedIn) -> None:
    admin.client.put(FLEET, json=stricter(), headers=admin.headers())
    r = admin.client.put(FLEET, params={"expected_version": 2}, json=stricter(),
                         headers=admin.headers())
    assert r.status_code == 409 and r.json()["error"]["code"] == "ruleset_version_conflict"


def test_a_dry_run_says_what_would_change_and_activates_nothing(admin: LoggedIn) -> None:
    r = admin.client.post(f"{FLEET}/dry-run", json=stricter(), headers=admin.headers())
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["current_version"], body["next_version"]) == (1, 2)
    assert body["changes"]["added"] == ["ops.many-processes"]
    assert admin.client.get(FLEET).json()["version"] == 1


def test_a_group_gets_its_own_versions_and_an_unknown_group_is_a_404(admin: LoggedIn) -> None:
    admin.client.post("/api/v1/groups", json={"name": "cameras", "kind": "static"},
                      headers=admin.headers())
    url = "/api/v1/detection/rulesets/groups/cameras"
    none_yet = admin.client.get(url)
    assert none_yet.status_code == 404
    assert none_yet.json()["error"]["code"] == "ruleset_version_not_found"
    r = admin.client.put(url, json={"rules": []}, headers=admin.headers())
    assert r.status_code == 200 and r.json()["scope"] == "group:cameras"
    assert r.json()["version"] == 1
    missing = admin.client.get("/api/v1/detection/rulesets/groups/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "group_not_found"


def test_an_operator_reads_rule_sets_but_only_an_admin_activates_them(
    operator: LoggedIn
) -> None:
    assert operator.client.get(f"{FLEET}/versions").status_code == 200
    r = operator.client.put(FLEET, json=stricter(), headers=operator.headers())
    assert r.status_code == 403


def test_the_status_says_when_this_process_runs_no_detection(operator: LoggedIn) -> None:
    assert operator.client.get("/api/v1/detection/status").json() == {
        "running": False, "stats": None}
