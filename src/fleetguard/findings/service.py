"""Scans on the platform: store them, match hosts to devices, keep findings across rescans.

Lifecycle of a finding, keyed by (subject, port, protocol, check) where the subject is the
matched device or, for a host no device claims, its address:

    first sight -> open;  seen again -> updated (last seen, evidence, severity, address);
    a later scan that covered it and did not see it -> resolved;  seen again -> reopened;
    its device decommissioned -> resolved (no scan matches that device again).

"Covered" is strict, so that a scan that could not look never claims a fix: the host was
in the scan and answered (``status: up``); the port was open in that scan or is known to
have been scanned (the scan's port list) and was not filtered or silent; no note says the
check could not run there; and checks that need login attempts are resolved only by scans
that made them.

Every transition is audited, batched per scan: one ``scan.ingest`` entry with the counts,
one ``finding.resolve`` and one ``finding.reopen`` entry listing the findings concerned.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select, text
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import as_utc, utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.findings.document import MAX_REPORT_BYTES
from fleetguard.findings.errors import (
    ReportTooLargeError,
    ScanNotFinishedError,
    ScanNotFoundError,
    ScanNotRunningError,
    ScheduleExistsError,
    ScheduleNotFoundError,
)
from fleetguard.findings.models import (
    CREDENTIAL_CHECKS,
    DeviceCheck,
    DueScan,
    Finding,
    FindingFilter,
    FindingPage,
    FindingState,
    MatchMethod,
    ReportFinding,
    Scan,
    ScanDocument,
    ScanHost,
    ScanOutcome,
    ScanPage,
    ScanSchedule,
    ScanSource,
    ScanStatus,
    Severity,
)
from fleetguard.registry import Device, DeviceState
from fleetguard.registry import service as registry
from fleetguard.store.tables import FindingRow, ScanHostRow, ScanRow, ScanScheduleRow

SCHEDULER_ACTOR = "system:scan-scheduler"
MAX_PAGE = 500
MAX_EVIDENCE = 4000
MAX_LISTED_IN_AUDIT = 200
MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(days=31)
_IN_CHUNK = 400
_LOCK_KEY = 0x66675F7363616E  # "fg_scan": serialises ingestion on PostgreSQL


# --- helpers ---------------------------------------------------------------------------------


def _new_id() -> str:
    return str(uuid.uuid4())


def _uuid(value: str, error: type[Exception], what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise error(f"no {what} {value[:60]!r}") from None


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def _encode_cursor(parts: list[Any]) -> str:
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (ValueError, TypeError):
        parts = None
    if not isinstance(parts, list) or len(parts) != 2:
        raise ValidationFailedError("cursor is not one this API gave out", field="cursor")
    return parts


def _serialise_ingestion(session: Session) -> None:
    """One ingestion at a time: two scans of one host must not both open its finding.

    SQLite units of work already begin IMMEDIATE (one writer); PostgreSQL takes a
    transaction-scoped advisory lock.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def _to_scan(row: ScanRow) -> Scan:
    outcome = json.loads(row.outcome or "{}")
    return Scan(
        id=row.id, source=ScanSource(row.source), schedule_id=row.schedule_id,
        requested_by=row.requested_by, status=ScanStatus(row.status), error=row.error,
        targets=json.loads(row.targets), options=json.loads(row.options or "{}"),
        progress_done=row.progress_done, progress_total=row.progress_total,
        created_at=row.created_at, updated_at=row.updated_at, started_at=row.started_at,
        finished_at=row.finished_at, hosts_total=row.hosts_total, hosts_up=row.hosts_up,
        findings_total=row.findings_total,
        outcome=ScanOutcome(**outcome) if outcome else None, report_size=row.report_size,
    )  # fmt: skip


def _to_finding(row: FindingRow) -> Finding:
    return Finding(
        id=row.id, subject=row.subject, device_id=row.device_id, host=row.host, port=row.port,
        protocol=row.protocol, service=row.service, check=row.check,
        severity=Severity(row.severity), title=row.title, evidence=row.evidence,
        remediation=row.remediation, references=json.loads(row.references),
        state=FindingState(row.state), matched_by=MatchMethod(row.matched_by),
        first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at,
        resolved_at=row.resolved_at, reopened=row.reopened, first_scan_id=row.first_scan_id,
        last_scan_id=row.last_scan_id,
    )  # fmt: skip


def _to_schedule(row: ScanScheduleRow) -> ScanSchedule:
    return ScanSchedule(
        id=row.id, name=row.name, targets=json.loads(row.targets), ports=row.ports,
        options=json.loads(row.options or "{}"), interval_s=row.interval_s, enabled=row.enabled,
        created_by=row.created_by, created_at=row.created_at, next_run_at=row.next_run_at,
        last_run_at=row.last_run_at, last_scan_id=row.last_scan_id,
    )  # fmt: skip


def _scan_row(session: Session, scan_id: str, *, lock: bool = False) -> ScanRow:
    key = _uuid(scan_id, ScanNotFoundError, "scan")
    query = select(ScanRow).where(ScanRow.id == key)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise ScanNotFoundError(f"no scan {key}")
    return row


def _targets_text(targets: Iterable[str]) -> str:
    listed = [str(t)[:300] for t in targets]
    if len(listed) > 1000:
        listed = [*listed[:1000], f"... and {len(listed) - 1000} more"]
    return json.dumps(listed)


# --- scans -----------------------------------------------------------------------------------


def create_scan(
    session: Session,
    *,
    actor: str,
    source: ScanSource,
    targets: Sequence[str],
    options: dict[str, Any],
    schedule_id: str | None = None,
) -> Scan:
    """A scan the server is about to run: status running, no progress yet."""
    now = utcnow()
    row = ScanRow(
        id=_new_id(), source=source.value, schedule_id=schedule_id, requested_by=actor[:200],
        status=ScanStatus.RUNNING.value, targets=_targets_text(targets),
        options=json.dumps(options, default=str), progress_done=0, progress_total=0,
        created_at=now, updated_at=now, started_at=now, hosts_total=0, hosts_up=0,
        findings_total=0, outcome="{}", report_size=0,
    )  # fmt: skip
    session.add(row)
    session.flush()
    append_audit_entry(
        session, actor=actor, action="scan.start", target=f"scan:{row.id}",
        details={"source": source.value, "targets": json.loads(row.targets)[:50],
                 "options": options, "schedule_id": schedule_id},
    )  # fmt: skip
    return _to_scan(row)


def record_scan_progress(session: Session, scan_id: str, *, done: int, total: int) -> None:
    """Progress of a running scan (bookkeeping, not audited); also its heartbeat."""
    row = _scan_row(session, scan_id)
    if row.status != ScanStatus.RUNNING.value:
        raise ScanNotRunningError(f"scan {row.id} is {row.status}")
    row.progress_done = max(0, done)
    row.progress_total = max(0, total)
    row.updated_at = utcnow()


def fail_scan(session: Session, scan_id: str, *, reason: str, actor: str) -> Scan:
    row = _scan_row(session, scan_id, lock=True)
    if row.status != ScanStatus.RUNNING.value:
        raise ScanNotRunningError(f"scan {row.id} is {row.status}")
    now = utcnow()
    row.status = ScanStatus.FAILED.value
    row.error = _clip(reason, 2000)
    row.finished_at = row.updated_at = now
    append_audit_entry(
        session, actor=actor, action="scan.fail", target=f"scan:{row.id}",
        details={"reason": row.error},
    )  # fmt: skip
    return _to_scan(row)


def fail_stale_scans(
    session: Session, *, silent_for: timedelta, keep: Iterable[str] = (), actor: str
) -> list[str]:
    """Fail running scans whose heartbeat stopped (e.g. the server restarted mid-scan)."""
    cutoff = utcnow() - silent_for
    keep_ids = set(keep)
    rows = list(session.execute(
        select(ScanRow).where(
            ScanRow.status == ScanStatus.RUNNING.value, ScanRow.updated_at < cutoff
        )
    ).scalars())  # fmt: skip
    failed = []
    for row in rows:
        if row.id in keep_ids:
            continue
        fail_scan(session, row.id, reason="interrupted: no progress (server restarted?)",
                  actor=actor)
        failed.append(row.id)
    return failed


def get_scan(session: Session, scan_id: str) -> Scan:
    return _to_scan(_scan_row(session, scan_id))


def scan_hosts(session: Session, scan_id: str) -> list[ScanHost]:
    row = _scan_row(session, scan_id)
    hosts = session.execute(
        select(ScanHostRow).where(ScanHostRow.scan_id == row.id).order_by(ScanHostRow.address)
    ).scalars()
    return [
        ScanHost(h.address, h.status, h.device_id, MatchMethod(h.matched_by), h.findings)
        for h in hosts
    ]


def scan_report(session: Session, scan_id: str) -> dict[str, Any]:
    """The report document of a finished scan, as it was received or produced."""
    row = _scan_row(session, scan_id)
    if row.report_gzip is None:
        raise ScanNotFinishedError(f"scan {row.id} is {row.status}: no report")
    document: dict[str, Any] = json.loads(gzip.decompress(row.report_gzip))
    return document


def list_scans(
    session: Session, *, status: ScanStatus | None = None, cursor: str | None = None,
    limit: int = 50,
) -> ScanPage:
    """Newest first, keyset-paginated on (created_at, id)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(ScanRow)
    if status is not None:
        query = query.where(ScanRow.status == status.value)
    if cursor:
        stamp_text, ident = _decode_cursor(cursor)
        try:
            stamp = datetime.fromisoformat(str(stamp_text))
        except ValueError:
            raise ValidationFailedError("cursor is not one this API gave out",
                                        field="cursor") from None
        query = query.where(or_(
            ScanRow.created_at < stamp,
            and_(ScanRow.created_at == stamp, ScanRow.id < str(ident)),
        ))  # fmt: skip
    rows = list(session.execute(
        query.order_by(ScanRow.created_at.desc(), ScanRow.id.desc()).limit(limit + 1)
    ).scalars())  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    return ScanPage(
        scans=[_to_scan(r) for r in rows],
        next_cursor=_encode_cursor([rows[-1].created_at.isoformat(), rows[-1].id])
        if more and rows else None,
    )  # fmt: skip


# --- matching --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Host:
    address: str
    up: bool
    open_ports: set[tuple[str, int]] = field(default_factory=set)
    silent_ports: set[tuple[str, int]] = field(default_factory=set)  # filtered, open|filtered
    serials: set[str] = field(default_factory=set)
    subject: str = ""
    device_id: str | None = None
    matched_by: MatchMethod = MatchMethod.UNMATCHED
    findings: int = 0


def _device_index(session: Session) -> dict[str, list[Device]]:
    """Registered devices (not decommissioned) by address, through the registry's API."""
    by_address: dict[str, list[Device]] = {}
    cursor: str | None = None
    while True:
        page = registry.list_devices(session, cursor=cursor, limit=registry.MAX_PAGE)
        for device in page.devices:
            if device.state is DeviceState.DECOMMISSIONED:
                continue
            for address in device.addresses:
                by_address.setdefault(address, []).append(device)
        if page.next_cursor is None:
            return by_address
        cursor = page.next_cursor


def _hosts_of(document: ScanDocument) -> dict[str, _Host]:
    hosts: dict[str, _Host] = {}
    for h in document.hosts:
        host = hosts.setdefault(h.address, _Host(h.address, up=False))
        host.up = host.up or h.status == "up"
        for p in h.ports:
            if p.state == "open":
                host.open_ports.add((p.protocol, p.port))
            elif p.state in ("filtered", "open|filtered"):
                host.silent_ports.add((p.protocol, p.port))
        for s in h.services:
            host.open_ports.add((s.protocol, s.port))
            serial = (s.extra.get("serialNumber") or "").strip()
            if serial:
                host.serials.add(serial[:128])
    for f in document.findings:  # a finding proves the host answered on that port
        host = hosts.setdefault(f.host, _Host(f.host, up=True))
        host.up = True
        host.open_ports.add((f.protocol, f.port))
    return hosts


def _match(session: Session, hosts: dict[str, _Host]) -> dict[str, Device]:
    """Give each host that answered a subject; returns the matched devices by id."""
    index = _device_index(session) if any(h.up for h in hosts.values()) else {}
    devices: dict[str, Device] = {}
    for host in hosts.values():
        if not host.up:
            continue
        chosen: Device | None = None
        for serial in sorted(host.serials):
            device = registry.find_device_by_serial(session, serial)
            if device is not None and device.state is not DeviceState.DECOMMISSIONED:
                chosen, host.matched_by = device, MatchMethod.SERIAL
                break
        if chosen is None:
            candidates = index.get(host.address, [])
            if len(candidates) == 1:
                chosen, host.matched_by = candidates[0], MatchMethod.ADDRESS
            elif len(candidates) > 1:
                host.matched_by = MatchMethod.AMBIGUOUS
        if chosen is not None:
            host.subject, host.device_id = f"device:{chosen.id}", chosen.id
            devices[chosen.id] = chosen
        else:
            host.subject = f"host:{host.address}"
    return devices


# --- ingestion -------------------------------------------------------------------------------

_Key = tuple[str, int, str, str]  # subject, port, protocol, check


def _merge(reported: dict[_Key, tuple[_Host, ReportFinding]], host: _Host,
           f: ReportFinding) -> None:
    key = (host.subject, f.port, f.protocol, f.check)
    seen = reported.get(key)
    if seen is None:
        reported[key] = (host, f)
        return
    # The same check twice on one port (e.g. two findings of one kind): keep the worse,
    # and the evidence of both.
    _, other = seen
    worse, lesser = (f, other) if f.severity.rank > other.severity.rank else (other, f)
    evidence = worse.evidence if lesser.evidence in worse.evidence else (
        f"{worse.evidence}; {lesser.evidence}"
    )
    reported[key] = (host, ReportFinding(
        host=worse.host, port=worse.port, protocol=worse.protocol, service=worse.service,
        check=worse.check, severity=worse.severity, title=worse.title,
        evidence=_clip(evidence, MAX_EVIDENCE), remediation=worse.remediation,
        references=worse.references,
    ))  # fmt: skip


def _load_findings(session: Session, subjects: Sequence[str]) -> list[FindingRow]:
    out: list[FindingRow] = []
    for chunk in _chunks(sorted(set(subjects))):
        out.extend(session.execute(
            select(FindingRow).where(FindingRow.subject.in_(chunk))
        ).scalars())  # fmt: skip
    return out


def _store_report(row: ScanRow, raw: dict[str, Any]) -> None:
    text_ = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, default=str)
    data = text_.encode()
    if len(data) > MAX_REPORT_BYTES:
        raise ReportTooLargeError(f"report over {MAX_REPORT_BYTES} bytes of JSON")
    row.report_gzip = gzip.compress(data, compresslevel=6, mtime=0)
    row.report_size = len(data)


def ingest_report(
    session: Session,
    document: ScanDocument,
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
    if scan_id is None:
        scan = ScanRow(
            id=_new_id(), source=ScanSource.UPLOAD.value, requested_by=actor[:200],
            status=ScanStatus.RUNNING.value, targets=_targets_text(document.targets),
            options=json.dumps(document.options, default=str), progress_done=0,
            progress_total=0, created_at=now, updated_at=now, started_at=document.started,
            hosts_total=0, hosts_up=0, findings_total=0, outcome="{}", report_size=0,
        )  # fmt: skip
        session.add(scan)
        session.flush()
    else:
        scan = _scan_row(session, scan_id, lock=True)
        if scan.status != ScanStatus.RUNNING.value:
            raise ScanNotRunningError(f"scan {scan.id} is {scan.status}")
    _store_report(scan, document.raw)

    hosts = _hosts_of(document)
    devices = _match(session, hosts)
    up = [h for h in hosts.values() if h.up]

    # Findings as reported, one per key.
    reported: dict[_Key, tuple[_Host, ReportFinding]] = {}
    for f in document.findings:
        host = hosts[f.host]
        host.findings += 1
        _merge(reported, host, f)

    subjects = {h.subject for h in up}
    adoptable = {f"host:{h.address}": h for h in up if h.device_id is not None}
    existing = _load_findings(session, [*subjects, *adoptable])
    by_key: dict[_Key, FindingRow] = {}
    adopted = 0
    for row in sorted(existing, key=lambda r: r.subject.startswith("host:")):
        key = (row.subject, row.port, row.protocol, row.check)
        if row.subject in adoptable:  # a host no device claimed before now has one
            host = adoptable[row.subject]
            key = (host.subject, row.port, row.protocol, row.check)
            if key in by_key:
                session.delete(row)  # the device's own finding carries the history
                continue
            row.subject, row.device_id = host.subject, host.device_id
            row.matched_by = host.matched_by.value
            adopted += 1
        by_key[key] = row

    opened = updated = reopened = resolved = kept_open = 0
    reopened_ids: list[int] = []
    resolved_rows: list[FindingRow] = []
    for key, (host, f) in reported.items():
        found = by_key.get(key)
        if found is None:
            row = FindingRow(
                subject=host.subject, device_id=host.device_id, host=host.address,
                port=f.port, protocol=f.protocol, service=f.service, check=f.check,
                severity=f.severity.value, severity_rank=f.severity.rank,
                title=_clip(f.title, 200), evidence=_clip(f.evidence, MAX_EVIDENCE),
                remediation=_clip(f.remediation, 4000),
                references=json.dumps(list(f.references)), state=FindingState.OPEN.value,
                matched_by=host.matched_by.value, first_seen_at=now, last_seen_at=now,
                resolved_at=None, reopened=0, first_scan_id=scan.id, last_scan_id=scan.id,
            )  # fmt: skip
            session.add(row)
            by_key[key] = row
            opened += 1
            continue
        row = found
        if row.state == FindingState.RESOLVED.value:
            row.state, row.resolved_at = FindingState.OPEN.value, None
            row.reopened += 1
            reopened += 1
            reopened_ids.append(row.id)
        else:
            updated += 1
        row.host, row.service, row.matched_by = host.address, f.service, host.matched_by.value
        row.severity, row.severity_rank = f.severity.value, f.severity.rank
        row.title, row.evidence = _clip(f.title, 200), _clip(f.evidence, MAX_EVIDENCE)
        row.remediation = _clip(f.remediation, 4000)
        row.references = json.dumps(list(f.references))
        row.last_seen_at, row.last_scan_id = now, scan.id

    notes = {(n.host, n.port, n.protocol, n.check) for n in document.notes}
    hosts_of_device: dict[str, list[_Host]] = {}
    for h in up:
        if h.device_id is not None:
            hosts_of_device.setdefault(h.device_id, []).append(h)

    def covering_host(row: FindingRow) -> _Host | None:
        host = hosts.get(row.host)
        if host is not None and host.up and host.subject == row.subject:
            return host
        if row.device_id is None or host is not None:
            return None
        # The device answered at another address and no longer lists the old one: it moved.
        device = devices.get(row.device_id)
        if device is None or row.host in device.addresses:
            return None
        candidates = hosts_of_device.get(row.device_id, [])
        return candidates[0] if len(candidates) == 1 else None

    def covered(row: FindingRow, host: _Host) -> bool:
        port = (row.protocol, row.port)
        if port in host.silent_ports:
            return False
        if port not in host.open_ports and (scanned_ports is None or port not in scanned_ports):
            return False
        if {(host.address, row.port, row.protocol, c) for c in (row.check, "scan")} & notes:
            return False
        return not (row.check in CREDENTIAL_CHECKS and not document.credentials_used)

    for key, row in by_key.items():
        if key in reported or row.state != FindingState.OPEN.value:
            continue
        cover = covering_host(row)
        if cover is not None and covered(row, cover):
            row.state, row.resolved_at = FindingState.RESOLVED.value, now
            row.last_scan_id = scan.id
            resolved += 1
            resolved_rows.append(row)
        else:
            kept_open += 1

    for h in hosts.values():
        if h.up or h.findings:
            session.add(ScanHostRow(
                scan_id=scan.id, address=h.address, status="up" if h.up else "no-response",
                device_id=h.device_id, matched_by=h.matched_by.value, findings=h.findings,
            ))  # fmt: skip
    session.flush()

    outcome = ScanOutcome(
        opened=opened, updated=updated, reopened=reopened, resolved=resolved,
        kept_open=kept_open, hosts_matched=sum(1 for h in up if h.device_id),
        hosts_unmatched=sum(1 for h in up if h.device_id is None),
    )  # fmt: skip
    scan.status = ScanStatus.FINISHED.value
    scan.finished_at = scan.updated_at = now
    scan.hosts_total = len(document.hosts)
    scan.hosts_up = len(up)
    scan.findings_total = len(document.findings)
    scan.outcome = json.dumps(outcome.to_dict())
    if scan.progress_total:
        scan.progress_done = scan.progress_total

    append_audit_entry(
        session, actor=actor, action="scan.ingest", target=f"scan:{scan.id}",
        details={**outcome.to_dict(), "adopted": adopted, "findings": len(document.findings),
                 "hosts_up": len(up), "source": scan.source},
    )  # fmt: skip
    if resolved_rows:
        append_audit_entry(
            session, actor=actor, action="finding.resolve", target=f"scan:{scan.id}",
            details=_listing(resolved_rows),
        )
    if reopened_ids:
        reopened_rows = [r for r in by_key.values() if r.id in set(reopened_ids)]
        append_audit_entry(
            session, actor=actor, action="finding.reopen", target=f"scan:{scan.id}",
            details=_listing(reopened_rows),
        )
    session.flush()
    # (imported here: the risk figure reads this module's counts)
    from fleetguard.findings.fleet import record_risk_snapshot

    record_risk_snapshot(session, now=now)
    return _to_scan(scan)


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
    from fleetguard.findings.fleet import record_risk_snapshot

    record_risk_snapshot(session, now=now)
    return len(rows)


def _listing(rows: list[FindingRow]) -> dict[str, Any]:
    listed = [
        {"id": r.id, "subject": r.subject, "port": r.port, "protocol": r.protocol,
         "check": r.check}
        for r in rows[:MAX_LISTED_IN_AUDIT]
    ]  # fmt: skip
    return {"count": len(rows), "findings": listed, "more": max(0, len(rows) - len(listed))}


# --- reading findings ------------------------------------------------------------------------


def _finding_query(flt: FindingFilter) -> Select[FindingRow]:
    query = select(FindingRow)
    if flt.device_id is not None:
        query = query.where(FindingRow.device_id == flt.device_id)
    if flt.unmatched is True:
        query = query.where(FindingRow.device_id.is_(None))
    elif flt.unmatched is False:
        query = query.where(FindingRow.device_id.is_not(None))
    if flt.host:
        query = query.where(FindingRow.host == flt.host)
    if flt.severity is not None:
        query = query.where(FindingRow.severity == flt.severity.value)
    if flt.min_severity is not None:
        query = query.where(FindingRow.severity_rank >= flt.min_severity.rank)
    if flt.check:
        query = query.where(FindingRow.check == flt.check)
    if flt.state is not None:
        query = query.where(FindingRow.state == flt.state.value)
    return query


def list_findings(
    session: Session, flt: FindingFilter | None = None, *, cursor: str | None = None,
    limit: int = 100,
) -> FindingPage:
    """Worst first, then oldest first; keyset-paginated on (severity rank, id)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = _finding_query(flt or FindingFilter())
    if cursor:
        rank, ident = _decode_cursor(cursor)
        if not isinstance(rank, int) or not isinstance(ident, int):
            raise ValidationFailedError("cursor is not one this API gave out", field="cursor")
        query = query.where(or_(
            FindingRow.severity_rank < rank,
            and_(FindingRow.severity_rank == rank, FindingRow.id > ident),
        ))  # fmt: skip
    rows = list(session.execute(
        query.order_by(FindingRow.severity_rank.desc(), FindingRow.id).limit(limit + 1)
    ).scalars())  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    return FindingPage(
        findings=[_to_finding(r) for r in rows],
        next_cursor=_encode_cursor([rows[-1].severity_rank, rows[-1].id]) if more and rows
        else None,
    )  # fmt: skip


def count_findings_by_severity(
    session: Session, *, state: FindingState | None = FindingState.OPEN,
    device_id: str | None = None,
) -> dict[Severity, int]:
    query = select(FindingRow.severity, func.count()).group_by(FindingRow.severity)
    if state is not None:
        query = query.where(FindingRow.state == state.value)
    if device_id is not None:
        query = query.where(FindingRow.device_id == device_id)
    counts = {s: 0 for s in Severity}
    for severity, n in session.execute(query).all():
        counts[Severity(severity)] = int(n)
    return counts


def devices_with_open_check(session: Session, check: str) -> list[DeviceCheck]:
    """Devices with ``check`` open (e.g. default-credentials), worst and most recent first."""
    rows = session.execute(
        select(
            FindingRow.device_id, func.count(), func.max(FindingRow.severity_rank),
            func.max(FindingRow.last_seen_at),
        )
        .where(FindingRow.check == check, FindingRow.state == FindingState.OPEN.value,
               FindingRow.device_id.is_not(None))
        .group_by(FindingRow.device_id)
    ).all()  # fmt: skip
    by_rank = {s.rank: s for s in Severity}
    out = [
        DeviceCheck(device_id=str(d), findings=int(n), worst=by_rank[int(rank)],
                    last_seen_at=_aware(seen))
        for d, n, rank, seen in rows
    ]  # fmt: skip
    out.sort(key=lambda c: (-c.worst.rank, -c.last_seen_at.timestamp(), c.device_id))
    return out


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite returns max() of a DateTime as text
        value = datetime.fromisoformat(value)
    return as_utc(value)


# --- schedules -------------------------------------------------------------------------------


def _schedule_row(session: Session, schedule_id: str, *, lock: bool = False) -> ScanScheduleRow:
    key = _uuid(schedule_id, ScheduleNotFoundError, "scan schedule")
    query = select(ScanScheduleRow).where(ScanScheduleRow.id == key)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise ScheduleNotFoundError(f"no scan schedule {key}")
    return row


def create_schedule(
    session: Session,
    *,
    actor: str,
    name: str,
    targets: Sequence[str],
    ports: str,
    options: dict[str, Any],
    interval: timedelta,
    first_run_at: datetime | None = None,
) -> ScanSchedule:
    """A scan the server runs every ``interval``. Targets and ports are validated by the
    caller (the scan package parses them); this stores them."""
    name = name.strip()
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise ValidationFailedError("name must be 1-100 printable characters", field="name")
    if not (MIN_INTERVAL <= interval <= MAX_INTERVAL):
        raise ValidationFailedError(
            f"interval must be between {int(MIN_INTERVAL.total_seconds())} s and "
            f"{int(MAX_INTERVAL.total_seconds())} s", field="interval_s",
        )  # fmt: skip
    if not targets:
        raise ValidationFailedError("at least one target", field="targets")
    if session.execute(select(ScanScheduleRow.id).where(ScanScheduleRow.name == name)).first():
        raise ScheduleExistsError(f"a scan schedule named {name!r} exists")
    now = utcnow()
    row = ScanScheduleRow(
        id=_new_id(), name=name, targets=json.dumps(list(targets)), ports=ports[:500],
        options=json.dumps(options), interval_s=int(interval.total_seconds()), enabled=True,
        created_by=actor[:200], created_at=now, next_run_at=first_run_at or now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    append_audit_entry(
        session, actor=actor, action="scan_schedule.create", target=f"scan_schedule:{row.id}",
        details={"name": name, "targets": list(targets)[:50], "ports": row.ports,
                 "options": options, "interval_s": row.interval_s},
    )  # fmt: skip
    return _to_schedule(row)


def list_schedules(session: Session) -> list[ScanSchedule]:
    rows = session.execute(select(ScanScheduleRow).order_by(ScanScheduleRow.name)).scalars()
    return [_to_schedule(r) for r in rows]


def get_schedule(session: Session, schedule_id: str) -> ScanSchedule:
    return _to_schedule(_schedule_row(session, schedule_id))


def delete_schedule(session: Session, schedule_id: str, *, actor: str) -> None:
    """Stops future runs; scans it made stay (their schedule id is cleared)."""
    row = _schedule_row(session, schedule_id, lock=True)
    append_audit_entry(
        session, actor=actor, action="scan_schedule.delete", target=f"scan_schedule:{row.id}",
        details={"name": row.name},
    )  # fmt: skip
    session.execute(delete(ScanScheduleRow).where(ScanScheduleRow.id == row.id))


def claim_due_schedules(
    session: Session, *, now: datetime | None = None, limit: int = 10,
    actor: str = SCHEDULER_ACTOR,
) -> list[DueScan]:
    """Schedules due at ``now``: each gets a running scan row and its next run time.

    A schedule whose previous scan still runs is skipped this time (and tried again at
    the next call). The caller runs the scans; rows of scans it never ran are failed by
    :func:`fail_stale_scans`.
    """
    now = now or utcnow()
    query = (
        select(ScanScheduleRow)
        .where(ScanScheduleRow.enabled.is_(True), ScanScheduleRow.next_run_at <= now)
        .order_by(ScanScheduleRow.next_run_at)
        .limit(max(0, limit))
        .with_for_update(skip_locked=True)
    )
    due: list[DueScan] = []
    for row in list(session.execute(query).scalars()):
        if row.last_scan_id is not None:
            last = session.get(ScanRow, row.last_scan_id)
            if last is not None and last.status == ScanStatus.RUNNING.value:
                continue
        scan = create_scan(
            session, actor=actor, source=ScanSource.SCHEDULE, targets=json.loads(row.targets),
            options={"ports": row.ports, **json.loads(row.options or "{}")},
            schedule_id=row.id,
        )  # fmt: skip
        row.last_run_at, row.last_scan_id = now, scan.id
        row.next_run_at = now + timedelta(seconds=row.interval_s)
        due.append(DueScan(_to_schedule(row), scan.id))
    return due


__all__ = [
    "MAX_PAGE",
    "SCHEDULER_ACTOR",
    "claim_due_schedules",
    "count_findings_by_severity",
    "create_scan",
    "create_schedule",
    "delete_schedule",
    "devices_with_open_check",
    "fail_scan",
    "fail_stale_scans",
    "get_scan",
    "get_schedule",
    "ingest_report",
    "list_findings",
    "list_scans",
    "list_schedules",
    "record_scan_progress",
    "scan_hosts",
    "scan_report",
]
