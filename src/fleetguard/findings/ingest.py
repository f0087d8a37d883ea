"""Apply a scan report to the findings: store it, match its hosts to devices, and write
what the lifecycle rules (:mod:`fleetguard.findings.reconcile`) decide.

Every transition is audited, batched per scan: one ``scan.ingest`` entry with the counts,
one ``finding.resolve`` and one ``finding.reopen`` entry listing the findings concerned.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.findings._records import (
    chunks,
    new_id,
    scan_row,
    targets_text,
    to_scan,
)
from fleetguard.findings.errors import ScanNotRunningError
from fleetguard.findings.fleet import record_risk_snapshot
from fleetguard.findings.matching import match_hosts
from fleetguard.findings.models import FindingState, Scan, ScanOutcome, ScanSource, ScanStatus
from fleetguard.findings.reconcile import (
    MAX_EVIDENCE,
    FindingKey,
    KnownFinding,
    ScanCoverage,
    ScannedHost,
    Transitions,
    clip,
    reconcile,
    report_notes,
    reported_findings,
    scanned_hosts,
)
from fleetguard.protocol.scan_report import (
    MAX_REPORT_BYTES,
    ReportFinding,
    ReportTooLargeError,
    ScanReportDocument,
)
from fleetguard.store.tables.findings import FindingRow, ScanHostRow, ScanRow

MAX_LISTED_IN_AUDIT = 200
_LOCK_KEY = 0x66675F7363616E  # "fg_scan": serialises ingestion on PostgreSQL

_Reported = dict[FindingKey, tuple[ScannedHost, ReportFinding]]


def _serialise_ingestion(session: Session) -> None:
    """One ingestion at a time: two scans of one host must not both open its finding.

    SQLite units of work already begin IMMEDIATE (one writer); PostgreSQL takes a
    transaction-scoped advisory lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def _scan_for(
    session: Session, report: ScanReportDocument, actor: str, scan_id: str | None
) -> ScanRow:
    """The running scan ``scan_id`` of the server's, or a new scan row for an upload."""
    if scan_id is not None:
        scan = scan_row(session, scan_id, lock=True)
        if scan.status != ScanStatus.RUNNING.value:
            raise ScanNotRunningError(f"scan {scan.id} is {scan.status}")
        return scan
    now = utcnow()
    scan = ScanRow(
        id=new_id(), source=ScanSource.UPLOAD.value, requested_by=actor[:200],
        status=ScanStatus.RUNNING.value, targets=targets_text(report.targets),
        options=json.dumps(report.options, default=str), progress_done=0,
        progress_total=0, created_at=now, updated_at=now, started_at=report.started,
        hosts_total=0, hosts_up=0, findings_total=0, outcome="{}", report_size=0,
    )  # fmt: skip
    session.add(scan)
    session.flush()
    return scan


def _store_report(row: ScanRow, report: ScanReportDocument) -> None:
    data = json.dumps(report.to_json_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_REPORT_BYTES:
        raise ReportTooLargeError(f"report over {MAX_REPORT_BYTES} bytes of JSON")
    row.report_gzip = gzip.compress(data, compresslevel=6, mtime=0)
    row.report_size = len(data)


def _stored_findings(session: Session, up: Sequence[ScannedHost]) -> tuple[
    dict[FindingKey, FindingRow], int
]:
    """Stored findings of the hosts that answered, by key, after adoption: the findings of
    a host no device claimed before, now matched, move to the device (returns how many)."""
    adoptable = {f"host:{h.address}": h for h in up if h.device_id is not None}
    subjects = sorted({h.subject for h in up} | set(adoptable))
    rows: list[FindingRow] = []
    for chunk in chunks(subjects):
        rows.extend(session.execute(
            select(FindingRow).where(FindingRow.subject.in_(chunk))
        ).scalars())  # fmt: skip
    by_key: dict[FindingKey, FindingRow] = {}
    adopted = 0
    for row in sorted(rows, key=lambda r: r.subject.startswith("host:")):
        host = adoptable.get(row.subject)
        if host is not None:
            if (host.subject, row.port, row.protocol, row.check) in by_key:
                session.delete(row)  # the device's own finding carries the history
                continue
            row.subject, row.device_id = host.subject, host.device_id
            row.matched_by = host.matched_by.value
            adopted += 1
        by_key[(row.subject, row.port, row.protocol, row.check)] = row
    return by_key, adopted


def _known(by_key: Mapping[FindingKey, FindingRow]) -> list[KnownFinding]:
    return [
        KnownFinding(r.subject, r.port, r.protocol, r.check, FindingState(r.state), r.host,
                     r.device_id)
        for r in by_key.values()
    ]  # fmt: skip


def _note_seen(row: FindingRow, host: ScannedHost, f: ReportFinding, scan_id: str,
               now: datetime) -> None:
    row.host, row.service, row.matched_by = host.address, f.service, host.matched_by.value
    row.severity, row.severity_rank = f.severity.value, f.severity.rank
    row.title, row.evidence = clip(f.title, 200), clip(f.evidence, MAX_EVIDENCE)
    row.remediation = clip(f.remediation, 4000)
    row.references = json.dumps(list(f.references))
    row.last_seen_at, row.last_scan_id = now, scan_id


def _apply(
    session: Session, by_key: dict[FindingKey, FindingRow], reported: _Reported,
    decided: Transitions, scan_id: str, now: datetime,
) -> None:
    """Write the transitions: new rows, reopened and updated ones, resolved ones."""
    for key in decided.opened:
        host, f = reported[key]
        row = FindingRow(
            subject=host.subject, device_id=host.device_id, port=f.port,
            protocol=f.protocol.value, check=f.check, state=FindingState.OPEN.value,
            first_seen_at=now, resolved_at=None, reopened=0, first_scan_id=scan_id,
        )  # fmt: skip
        _note_seen(row, host, f, scan_id, now)
        session.add(row)
        by_key[key] = row
    for key in decided.reopened:
        row = by_key[key]
        row.state, row.resolved_at = FindingState.OPEN.value, None
        row.reopened += 1
    for key in (*decided.reopened, *decided.updated):
        _note_seen(by_key[key], *reported[key], scan_id, now)
    for key in decided.resolved:
        row = by_key[key]
        row.state, row.resolved_at, row.last_scan_id = FindingState.RESOLVED.value, now, scan_id


def _record_hosts(session: Session, scan_id: str, hosts: Iterable[ScannedHost]) -> None:
    for h in hosts:
        if h.up or h.findings:
            session.add(ScanHostRow(
                scan_id=scan_id, address=h.address, status="up" if h.up else "no-response",
                device_id=h.device_id, matched_by=h.matched_by.value, findings=h.findings,
            ))  # fmt: skip


def _finish(scan: ScanRow, report: ScanReportDocument, outcome: ScanOutcome, hosts_up: int,
            now: datetime) -> None:
    scan.status = ScanStatus.FINISHED.value
    scan.finished_at = scan.updated_at = now
    scan.hosts_total = len(report.hosts)
    scan.hosts_up = hosts_up
    scan.findings_total = len(report.findings)
    scan.outcome = json.dumps(outcome.to_dict())
    if scan.progress_total:
        scan.progress_done = scan.progress_total


def _listing(rows: list[FindingRow]) -> dict[str, Any]:
    listed = [
        {"id": r.id, "subject": r.subject, "port": r.port, "protocol": r.protocol,
         "check": r.check}
        for r in rows[:MAX_LISTED_IN_AUDIT]
    ]  # fmt: skip
    return {"count": len(rows), "findings": listed, "more": max(0, len(rows) - len(listed))}


def _audit_transitions(
    session: Session, actor: str, scan_id: str, by_key: Mapping[FindingKey, FindingRow],
    decided: Transitions,
) -> None:
    for action, keys in (("finding.resolve", decided.resolved),
                         ("finding.reopen", decided.reopened)):  # fmt: skip
        if keys:
            wanted = set(keys)
            rows = [r for k, r in by_key.items() if k in wanted]
            append_audit_entry(session, actor=actor, action=action, target=f"scan:{scan_id}",
                               details=_listing(rows))  # fmt: skip


def ingest_report(
    session: Session,
    report: ScanReportDocument,
    *,
    actor: str,
    scan_id: str | None = None,
    scanned_ports: frozenset[tuple[str, int]] | None = None,
) -> Scan:
    """Store a finished report and apply it to the findings.

    ``scan_id`` names a running scan of the server's; without it, an uploaded report
    becomes a new finished scan. ``scanned_ports`` is the scan's port list as
    ``{("tcp", 23), ...}`` when known: then a port that no longer answers counts as
    covered; without it only ports the report lists as open do.
    """
    _serialise_ingestion(session)
    now = utcnow()
    scan = _scan_for(session, report, actor, scan_id)
    _store_report(scan, report)

    hosts = scanned_hosts(report)
    devices = match_hosts(session, hosts)
    up = [h for h in hosts.values() if h.up]
    reported = reported_findings(report, hosts)
    by_key, adopted = _stored_findings(session, up)
    coverage = ScanCoverage(
        hosts=hosts, device_addresses={i: d.addresses for i, d in devices.items()},
        notes=report_notes(report), scanned_ports=scanned_ports,
        credentials_used=report.credentials_used,
    )  # fmt: skip
    decided = reconcile(_known(by_key), reported, coverage)
    _apply(session, by_key, reported, decided, scan.id, now)
    _record_hosts(session, scan.id, hosts.values())
    session.flush()

    outcome = ScanOutcome(
        opened=len(decided.opened), updated=len(decided.updated),
        reopened=len(decided.reopened), resolved=len(decided.resolved),
        kept_open=len(decided.kept_open), hosts_matched=sum(1 for h in up if h.device_id),
        hosts_unmatched=sum(1 for h in up if h.device_id is None),
    )  # fmt: skip
    _finish(scan, report, outcome, len(up), now)
    append_audit_entry(
        session, actor=actor, action="scan.ingest", target=f"scan:{scan.id}",
        details={**outcome.to_dict(), "adopted": adopted, "findings": len(report.findings),
                 "hosts_up": len(up), "source": scan.source},
    )  # fmt: skip
    _audit_transitions(session, actor, scan.id, by_key, decided)
    session.flush()
    record_risk_snapshot(session, now=now)
    return to_scan(scan)


def close_findings_of_decommissioned_device(
    session: Session, device_id: str, *, actor: str, now: datetime | None = None
) -> int:
    """Resolve the open findings of a device that has left the fleet for good.

    Scans no longer match hosts to a decommissioned device, so no scan could ever resolve
    them; left open they would count in the fleet's open findings for ever. One
    ``finding.resolve`` audit entry lists them, with the reason. Returns how many.
    """
    now = now or utcnow()
    rows = list(session.execute(
        select(FindingRow).where(FindingRow.device_id == device_id,
                                 FindingRow.state == FindingState.OPEN.value)
        .order_by(FindingRow.id)
    ).scalars())  # fmt: skip
    if not rows:
        return 0
    for row in rows:
        row.state, row.resolved_at = FindingState.RESOLVED.value, now
    append_audit_entry(
        session, actor=actor, action="finding.resolve", target=f"device:{device_id}",
        details={**_listing(rows), "reason": "device decommissioned"},
    )
    session.flush()
    record_risk_snapshot(session, now=now)
    return len(rows)


__all__ = ["close_findings_of_decommissioned_device", "ingest_report"]
