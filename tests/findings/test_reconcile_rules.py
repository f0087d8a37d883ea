"""The finding lifecycle's rules, without a database: what one scan does to the findings
stored before it (opened, updated, reopened, resolved, kept open)."""

from __future__ import annotations

from fleetguard.findings import FindingState, MatchMethod
from fleetguard.findings.reconcile import (
    KnownFinding,
    ScanCoverage,
    ScannedHost,
    reconcile,
    reported_findings,
    scanned_hosts,
)
from fleetguard.protocol.scan_report import parse_scan_report
from tests.findings.reports import finding, host, report

CAM = "192.0.2.10"
DEVICE = "7f0c7c4e-0000-4000-8000-000000000001"
SUBJECT = f"device:{DEVICE}"
TELNET_KEY = (SUBJECT, 23, "tcp", "cleartext-protocol")


def _stored(check: str = "cleartext-protocol", *, port: int = 23, protocol: str = "tcp",
            state: FindingState = FindingState.OPEN, at: str = CAM) -> KnownFinding:
    return KnownFinding(SUBJECT, port, protocol, check, state, at, DEVICE)


def _cam(*, up: bool = True, open_ports: set[tuple[str, int]] | None = None,
         silent_ports: set[tuple[str, int]] | None = None, address: str = CAM) -> ScannedHost:
    h = ScannedHost(address, up=up, open_ports=open_ports or set(),
                    silent_ports=silent_ports or set())
    h.claim(DEVICE, MatchMethod.ADDRESS)
    return h


def _coverage(*hosts: ScannedHost, listed: tuple[str, ...] = (CAM,),
              notes: frozenset[tuple[str, int, str, str]] = frozenset(),
              scanned_ports: frozenset[tuple[str, int]] | None = None,
              credentials_used: bool = True) -> ScanCoverage:
    return ScanCoverage(hosts={h.address: h for h in hosts}, device_addresses={DEVICE: listed},
                        notes=notes, scanned_ports=scanned_ports,
                        credentials_used=credentials_used)


def test_a_finding_seen_for_the_first_time_is_opened() -> None:
    decided = reconcile([], [TELNET_KEY], _coverage(_cam(open_ports={("tcp", 23)})))
    assert decided.opened == (TELNET_KEY,) and not decided.updated


def test_an_open_finding_seen_again_is_updated() -> None:
    decided = reconcile([_stored()], [TELNET_KEY], _coverage(_cam(open_ports={("tcp", 23)})))
    assert decided.updated == (TELNET_KEY,) and not decided.opened and not decided.reopened


def test_a_resolved_finding_seen_again_is_reopened() -> None:
    decided = reconcile([_stored(state=FindingState.RESOLVED)], [TELNET_KEY],
                        _coverage(_cam(open_ports={("tcp", 23)})))
    assert decided.reopened == (TELNET_KEY,) and not decided.updated


def test_an_open_finding_on_an_answering_open_port_not_seen_again_is_resolved() -> None:
    decided = reconcile([_stored()], [], _coverage(_cam(open_ports={("tcp", 23)})))
    assert decided.resolved == (TELNET_KEY,) and not decided.kept_open


def test_a_resolved_finding_not_seen_again_stays_as_it_is() -> None:
    decided = reconcile([_stored(state=FindingState.RESOLVED)], [],
                        _coverage(_cam(open_ports={("tcp", 23)})))
    assert decided == type(decided)()


def test_a_host_that_did_not_answer_keeps_its_findings_open() -> None:
    decided = reconcile([_stored()], [], _coverage(_cam(up=False)))
    assert decided.kept_open == (TELNET_KEY,) and not decided.resolved


def test_a_host_outside_the_scan_keeps_its_findings_open() -> None:
    decided = reconcile([_stored()], [], _coverage())
    assert decided.kept_open == (TELNET_KEY,)


def test_a_filtered_port_keeps_its_finding_open() -> None:
    decided = reconcile([_stored()], [], _coverage(_cam(silent_ports={("tcp", 23)})))
    assert decided.kept_open == (TELNET_KEY,)


def test_a_port_absent_from_the_report_resolves_only_when_the_port_list_names_it() -> None:
    cam = _cam(open_ports={("tcp", 80)})
    without_list = reconcile([_stored()], [], _coverage(cam))
    with_list = reconcile([_stored()], [],
                          _coverage(cam, scanned_ports=frozenset({("tcp", 23), ("tcp", 80)})))
    assert without_list.kept_open == (TELNET_KEY,)
    assert with_list.resolved == (TELNET_KEY,)


def test_a_note_that_the_check_could_not_run_keeps_its_finding_open() -> None:
    notes = frozenset({(CAM, 23, "tcp", "cleartext-protocol")})
    decided = reconcile([_stored()], [], _coverage(_cam(open_ports={("tcp", 23)}), notes=notes))
    assert decided.kept_open == (TELNET_KEY,)


def test_a_credential_check_is_resolved_only_by_a_scan_that_tried_logins() -> None:
    creds = _stored("default-credentials")
    cam = _cam(open_ports={("tcp", 23)})
    without = reconcile([creds], [], _coverage(cam, credentials_used=False))
    with_logins = reconcile([creds], [], _coverage(cam, credentials_used=True))
    assert without.kept_open == (creds.key,)
    assert with_logins.resolved == (creds.key,)


def test_a_device_that_moved_and_no_longer_lists_the_old_address_is_followed() -> None:
    moved = _cam(address="192.0.2.99", open_ports={("tcp", 23)})
    decided = reconcile([_stored()], [], _coverage(moved, listed=("192.0.2.99",)))
    assert decided.resolved == (TELNET_KEY,)


def test_a_device_still_listing_the_old_address_is_not_followed_to_a_new_one() -> None:
    moved = _cam(address="192.0.2.99", open_ports={("tcp", 23)})
    decided = reconcile([_stored()], [], _coverage(moved, listed=(CAM, "192.0.2.99")))
    assert decided.kept_open == (TELNET_KEY,)


def test_the_same_check_twice_on_one_port_keeps_the_worse_with_both_evidences() -> None:
    doc = parse_scan_report(report([host(CAM, open_ports=(("tcp", 23, "telnet"),))], [
        finding(CAM, 23, "default-credentials", severity="high", evidence="admin:a***n"),
        finding(CAM, 23, "default-credentials", severity="critical", evidence="root:x***1"),
    ]))
    hosts = scanned_hosts(doc)
    hosts[CAM].claim(DEVICE, MatchMethod.ADDRESS)

    ((host_seen, kept),) = reported_findings(doc, hosts).values()

    assert kept.severity.value == "critical"
    assert kept.evidence == "root:x***1; admin:a***n"
    assert host_seen.findings == 2


def test_a_finding_proves_its_host_answered_on_that_port() -> None:
    doc = parse_scan_report(report([host(CAM, up=False)], [finding(CAM, 8080, "no-authentication")]))
    cam = scanned_hosts(doc)[CAM]
    assert cam.up and ("tcp", 8080) in cam.open_ports
