"""Decommissioning a device: its state, its findings and its credentials change together,
each change in the audit log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetguard.auditlog import list_audit_entries
from fleetguard.core.config import Settings
from fleetguard.findings import FindingState, count_findings_by_severity
from fleetguard.identity import service as identity
from fleetguard.identity.ca import init_installation_ca
from fleetguard.identity.errors import DeviceNotTrustedError, EnrollmentTokenInvalidError
from fleetguard.keys import MasterKey
from fleetguard.pki import FleetCA
from fleetguard.registry import DeviceState
from fleetguard.registry import service as registry
from fleetguard.registry.errors import DeviceNotFoundError
from fleetguard.server.decommission import decommission_device
from fleetguard.store import Database
from tests.findings.reports import finding, host, report
from tests.findings.support import device_at, ingest_document
from tests.support import csr_pem

ADDRESS = "127.0.0.31"


@pytest.fixture
def ca(settings: Settings, master_key: MasterKey) -> Iterator[FleetCA]:
    with init_installation_ca(settings, master_key) as fleet_ca:
        yield fleet_ca


@pytest.fixture
def device_id(sqlite_db: Database, ca: FleetCA) -> str:
    """An enrolled device at ADDRESS with an open cleartext-protocol finding."""
    device_id = device_at(sqlite_db, "cam-retired", ADDRESS)
    with sqlite_db.session() as s:
        token, _ = identity.create_enrollment_token(s, ca, device_id=device_id, actor="t",
                                                    issuer=None)
        identity.enroll_with_token(s, ca, token=token, csr=csr_pem(), source=ADDRESS)
    ingest_document(sqlite_db, report([host(ADDRESS, open_ports=(("tcp", 23, "telnet"),))],
                                      [finding(ADDRESS, 23, "cleartext-protocol")]))
    return device_id


def test_decommission_is_final_and_returns_the_device_so(
    sqlite_db: Database, ca: FleetCA, device_id: str
) -> None:
    with sqlite_db.session() as s:
        device = decommission_device(s, ca, device_id=device_id, actor="t", reason="broken")
    assert device.state is DeviceState.DECOMMISSIONED
    with sqlite_db.read_session() as s:
        assert registry.get_device(s, device_id).state is DeviceState.DECOMMISSIONED


def test_decommission_revokes_certificates_and_kills_tokens(
    sqlite_db: Database, ca: FleetCA, device_id: str
) -> None:
    with sqlite_db.session() as s:
        spare, _ = identity.create_enrollment_token(s, ca, device_id=device_id, actor="t",
                                                    issuer=None)
        decommission_device(s, ca, device_id=device_id, actor="t")
        certificates = identity.list_certificates(s, device_id=device_id)
    assert certificates and all(c.revoked_at for c in certificates)
    with pytest.raises((EnrollmentTokenInvalidError, DeviceNotTrustedError)), \
            sqlite_db.session() as s:
        identity.enroll_with_token(s, ca, token=spare, csr=csr_pem(), source=ADDRESS)


def test_decommission_resolves_the_devices_open_findings(
    sqlite_db: Database, ca: FleetCA, device_id: str
) -> None:
    with sqlite_db.session() as s:
        decommission_device(s, ca, device_id=device_id, actor="t")
    with sqlite_db.read_session() as s:
        assert sum(count_findings_by_severity(s, device_id=device_id).values()) == 0
        assert sum(count_findings_by_severity(s, device_id=device_id,
                                              state=FindingState.RESOLVED).values()) == 1


def test_decommission_audits_the_state_the_findings_and_each_revocation(
    sqlite_db: Database, ca: FleetCA, device_id: str
) -> None:
    with sqlite_db.read_session() as s:
        before = list_audit_entries(s, newest_first=True, limit=1)[0].seq
    with sqlite_db.session() as s:
        decommission_device(s, ca, device_id=device_id, actor="operator:ann", reason="broken")
    with sqlite_db.read_session() as s:
        entries = list_audit_entries(s, after_seq=before)
    assert [(e.action, e.actor) for e in entries] == [
        ("device.state.decommissioned", "operator:ann"),
        ("finding.resolve", "operator:ann"),
        ("certificate.revoke", "operator:ann"),
    ]
    assert entries[0].target == entries[1].target == f"device:{device_id}"
    assert entries[2].details["reason"] == "cessation_of_operation"


def test_an_unknown_device_is_not_found(sqlite_db: Database, ca: FleetCA) -> None:
    with pytest.raises(DeviceNotFoundError), sqlite_db.session() as s:
        decommission_device(s, ca, device_id="00000000-0000-4000-8000-000000000000", actor="t")
