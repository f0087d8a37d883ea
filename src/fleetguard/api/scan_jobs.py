"""Scans the server runs itself: on an operator's request or from a schedule.

Each scan runs in its own thread (the scanner has its own event loop there, so it never
competes with the API's loop); a second thread of the job writes its progress to the
database every second, which doubles as the heartbeat :func:`run_due_scans` checks to
fail scans a restart interrupted. At most ``MAX_RUNNING_SCANS`` run at once per process.

This module is in the API layer because it joins two domains the layering keeps apart:
the scanner (``fleetguard.scan``) and the findings it feeds (``fleetguard.findings``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from fleetguard import findings
from fleetguard.core.errors import FleetError, ValidationFailedError, excerpt
from fleetguard.findings import Scan, ScanCapacityError, ScanSource
from fleetguard.scan import ScanOptions, build_options, report_document, run_scan
from fleetguard.store import Database

log = logging.getLogger("fleetguard.scan_jobs")

MAX_RUNNING_SCANS = 2
#: A scan started through the API may cover at most this many addresses (a /20).
MAX_SERVER_SCAN_ADDRESSES = 4096
PROGRESS_EVERY_S = 1.0
#: A running scan with no heartbeat for this long was interrupted (server restart).
STALE_AFTER = timedelta(minutes=5)
#: The fleet risk figure is stored after each ingestion, and at least this often besides
#: (devices join and leave the fleet between scans).
RISK_SNAPSHOT_EVERY = timedelta(minutes=30)
#: The options of ScanOptions an API caller may set; nothing that names a server file.
OPTION_NAMES = frozenset(
    {"timeout", "concurrency", "host_concurrency", "rate", "credentials", "max_logins",
     "login_delay"}
)  # fmt: skip

_lock = threading.Lock()
_running: dict[str, threading.Thread] = {}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The networks server-run scans may reach; None (the default) is anywhere.
_scope: tuple[Network, ...] | None = None


def restrict_targets(networks: Iterable[str] | None) -> None:
    """Let server-run scans (API and schedules) reach only these networks; None lifts it.

    Inside a scope a target must be written as an address, a CIDR or a range: a host name
    is refused before anything resolves it, since the lookup is itself traffic and what
    it would resolve to is unknown beforehand. The API fuzzer confines scans to loopback
    with this (tests/security/fuzz_support.py).
    """
    global _scope
    _scope = None if networks is None else tuple(
        ipaddress.ip_network(n, strict=False) for n in networks
    )


def target_scope() -> tuple[Network, ...] | None:
    return _scope


def _inside(first: ipaddress.IPv4Address | ipaddress.IPv6Address,
            last: ipaddress.IPv4Address | ipaddress.IPv6Address,
            scope: tuple[Network, ...]) -> bool:
    return any(
        net.version == first.version == last.version
        and first in net and last in net
        for net in scope
    )


def _literal_bounds(item: str) -> tuple[Any, Any] | None:
    """First and last address of an address, CIDR or range expression; None otherwise."""
    try:
        net = ipaddress.ip_network(item, strict=False)
    except ValueError:
        pass
    else:
        return net[0], net[-1]
    left, sep, right = item.partition("-")
    if not sep:
        return None
    try:
        first = ipaddress.ip_address(left.strip())
        right = right.strip()
        if right.isdigit() and len(right) <= 3 and first.version == 4:
            last: Any = ipaddress.ip_address(str(first).rsplit(".", 1)[0] + "." + right)
        else:
            last = ipaddress.ip_address(right)
    except ValueError:
        return None
    return first, last


def _check_scope(targets: Sequence[str]) -> None:
    scope = _scope
    if scope is None:
        return
    allowed = ", ".join(str(n) for n in scope)
    for raw in targets:
        item = raw.strip()
        if not item:
            continue
        bounds = _literal_bounds(item)
        if bounds is None:
            raise ValidationFailedError(
                f"target {excerpt(item)}: this server scans only addresses, networks or "
                f"ranges within {allowed}", field="targets",
            )  # fmt: skip
        if not _inside(*bounds, scope):
            raise ValidationFailedError(
                f"target {excerpt(item)} is outside what this server may scan ({allowed})",
                field="targets",
            )


def scan_options(targets: Sequence[str], ports: str, options: Mapping[str, Any]) -> ScanOptions:
    """Validated ScanOptions for a server-run scan (422 on bad targets, ports or options,
    and on targets outside the scan scope, see :func:`restrict_targets`)."""
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise ValidationFailedError(f"unknown scan option {sorted(unknown)[0]!r}",
                                    field="options")
    _check_scope(targets)
    parsed = build_options(
        list(targets), ports=ports, max_addresses=MAX_SERVER_SCAN_ADDRESSES, **dict(options)
    )
    scope = _scope
    if scope is not None:
        for t in parsed.targets:
            address = ipaddress.ip_address(t.address)
            if not _inside(address, address, scope):
                raise ValidationFailedError(
                    f"target {t.address} is outside what this server may scan", field="targets"
                )
    return parsed


def scanned_ports(options: ScanOptions) -> frozenset[tuple[str, int]]:
    return frozenset((p.transport.value, p.port) for p in options.ports)


class _Progress:
    """The scanner's ProgressSink; read by the job's writer thread."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n


def running_scans() -> set[str]:
    with _lock:
        return {scan_id for scan_id, t in _running.items() if t.is_alive()}


def wait_for_scans(timeout: float = 60.0) -> bool:
    """Wait until no scan of this process runs (tests, orderly shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            threads = list(_running.values())
        if not threads:
            return True
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            with _lock:
                return not _running


def _record_failure(db: Database, scan_id: str, reason: str, actor: str) -> None:
    try:
        with db.session() as session:
            findings.fail_scan(session, scan_id, reason=reason, actor=actor)
    except FleetError:
        log.exception("could not record the failure of scan %s", scan_id)


def _job(db: Database, scan_id: str, options: ScanOptions, actor: str) -> None:
    progress = _Progress()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["document"] = report_document(run_scan(options, progress))
        except BaseException as exc:  # reported as the scan's failure below
            box["error"] = exc

    try:
        scanner = threading.Thread(target=work, name=f"scan-{scan_id[:8]}", daemon=True)
        scanner.start()
        while scanner.is_alive():
            scanner.join(PROGRESS_EVERY_S)
            if not scanner.is_alive():
                break
            try:
                with db.session() as session:
                    findings.record_scan_progress(
                        session, scan_id, done=progress.done, total=progress.total
                    )
            except FleetError:
                log.warning("could not record the progress of scan %s", scan_id, exc_info=True)
        if "error" in box:
            exc = box["error"]
            log.error("scan %s failed: %s", scan_id, exc)
            _record_failure(db, scan_id, f"{type(exc).__name__}: {exc}", actor)
            return
        # Through JSON, so what is stored is exactly what GET .../report serves.
        document = json.loads(json.dumps(box["document"], default=str))
        try:
            parsed = findings.parse_report_document(document)
            with db.session() as session:
                findings.record_scan_progress(
                    session, scan_id, done=progress.total, total=progress.total
                )
                findings.ingest_report(
                    session, parsed, actor=actor, scan_id=scan_id,
                    scanned_ports=scanned_ports(options),
                )  # fmt: skip
        except FleetError as exc:
            log.error("could not store scan %s: %s", scan_id, exc.message)
            _record_failure(db, scan_id, f"storing the report failed: {exc.message}", actor)
    except Exception as exc:  # never let a job thread die silently
        log.exception("scan job %s crashed", scan_id)
        _record_failure(db, scan_id, f"internal error: {type(exc).__name__}", actor)
    finally:
        with _lock:
            _running.pop(scan_id, None)


def _launch(db: Database, scan_id: str, options: ScanOptions, actor: str) -> None:
    thread = threading.Thread(
        target=_job, args=(db, scan_id, options, actor), name=f"scan-job-{scan_id[:8]}",
        daemon=True,
    )  # fmt: skip
    _running[scan_id] = thread
    thread.start()


def _reserve() -> None:
    """Caller holds _lock."""
    alive = sum(1 for t in _running.values() if t.is_alive())
    if alive >= MAX_RUNNING_SCANS:
        raise ScanCapacityError(
            f"{alive} scans are running on this server (at most {MAX_RUNNING_SCANS}); retry later",
            retry_after=30,
        )


def start_scan(
    db: Database, *, actor: str, targets: Sequence[str], ports: str,
    options: Mapping[str, Any],
) -> Scan:
    """Validate, record a running scan, and run it in the background."""
    parsed = scan_options(targets, ports, options)
    summary = {"ports": ports, **parsed.summary(), "port_count": len(parsed.ports)}
    with _lock:
        _reserve()
        with db.session() as session:
            scan = findings.create_scan(
                session, actor=actor, source=ScanSource.SERVER, targets=list(targets),
                options=summary,
            )  # fmt: skip
        _launch(db, scan.id, parsed, actor)
    return scan


def run_due_scans(db: Database, *, now: datetime | None = None) -> list[str]:
    """Start the scans whose schedule is due; fail scans a restart interrupted; keep the
    stored fleet risk figure current.

    Call it periodically from the server (every 30 s is plenty); returns the ids of the
    scans it started. Never raises for a bad schedule: that scan is recorded as failed.
    """
    actor = findings.SCHEDULER_ACTOR
    with db.session() as session:
        findings.fail_stale_scans(session, silent_for=STALE_AFTER, keep=running_scans(),
                                  actor=actor)
        findings.record_risk_snapshot(session, unless_newer_than=RISK_SNAPSHOT_EVERY)
    started: list[str] = []
    with _lock:
        free = MAX_RUNNING_SCANS - sum(1 for t in _running.values() if t.is_alive())
        if free <= 0:
            return started
        with db.session() as session:
            due = findings.claim_due_schedules(session, now=now, limit=free)
        for item in due:
            schedule = item.schedule
            try:
                parsed = scan_options(schedule.targets, schedule.ports, schedule.options)
            except FleetError as exc:
                _record_failure(db, item.scan_id, f"bad schedule: {exc.message}", actor)
                continue
            _launch(db, item.scan_id, parsed, actor)
            started.append(item.scan_id)
    return started


__all__ = [
    "MAX_RUNNING_SCANS",
    "MAX_SERVER_SCAN_ADDRESSES",
    "restrict_targets",
    "run_due_scans",
    "running_scans",
    "scan_options",
    "scanned_ports",
    "start_scan",
    "target_scope",
    "wait_for_scans",
]
