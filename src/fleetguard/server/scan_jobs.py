"""Scans the server runs itself: on an operator's request or from a schedule.

Each scan runs in its own thread (the scanner has its own event loop there, so it never
competes with the API's loop); a second thread of the job writes its progress to the
database every second, which doubles as the heartbeat :meth:`ScanJobs.run_due_scans`
checks to fail scans a restart interrupted. At most ``max_running`` run at once per
process. The jobs are an object the process owns (``fleetguard serve`` makes one and hands
it to the operator app), so two apps in one process, as in tests, never share a count.

It joins two domains the layering keeps apart: the scanner (``fleetguard.scan``) and the
findings it feeds (``fleetguard.findings``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from fleetguard import findings
from fleetguard.core.errors import FleetError, ValidationFailedError
from fleetguard.findings import Scan, ScanCapacityError, ScanSource
from fleetguard.protocol.scan_report import parse_scan_report
from fleetguard.scan import (
    ProgressSink,
    ScanOptions,
    ScanReport,
    build_options,
    report_document,
    run_scan,
)
from fleetguard.server.scan_scope import ScanScope
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

Scanner = Callable[[ScanOptions, ProgressSink], ScanReport]


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


class ScanJobs:
    """The scans this process runs: started by operators or schedules, at most
    ``max_running`` at once, within ``scope`` when one is given (None: anywhere)."""

    def __init__(
        self, db: Database, *, scope: ScanScope | None = None, scanner: Scanner = run_scan,
        max_running: int = MAX_RUNNING_SCANS,
    ) -> None:
        self.db = db
        self.scope = scope
        self.max_running = max_running
        self._scanner = scanner
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}

    def scan_options(
        self, targets: Sequence[str], ports: str, options: Mapping[str, Any]
    ) -> ScanOptions:
        """Validated ScanOptions for a server-run scan (422 on bad targets, ports or
        options, and on targets outside the scope)."""
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise ValidationFailedError(f"unknown scan option {sorted(unknown)[0]!r}",
                                        field="options")
        if self.scope is not None:
            self.scope.check_targets(targets)
        parsed = build_options(
            list(targets), ports=ports, max_addresses=MAX_SERVER_SCAN_ADDRESSES, **dict(options)
        )
        if self.scope is not None:
            self.scope.check_options(parsed)
        return parsed

    def start_scan(
        self, *, actor: str, targets: Sequence[str], ports: str, options: Mapping[str, Any],
    ) -> Scan:
        """Validate, record a running scan, and run it in the background."""
        parsed = self.scan_options(targets, ports, options)
        summary = {"ports": ports, **parsed.summary(), "port_count": len(parsed.ports)}
        with self._lock:
            self._reserve()
            with self.db.session() as session:
                scan = findings.create_scan(
                    session, actor=actor, source=ScanSource.SERVER, targets=list(targets),
                    options=summary,
                )  # fmt: skip
            self._launch(scan.id, parsed, actor)
        return scan

    def run_due_scans(self, *, now: datetime | None = None) -> list[str]:
        """Start the scans whose schedule is due; fail scans a restart interrupted; keep
        the stored fleet risk figure current.

        The server calls it periodically (every 30 s is plenty); returns the ids of the
        scans it started. Never raises for a bad schedule: that scan is recorded as failed.
        """
        actor = findings.SCHEDULER_ACTOR
        with self.db.session() as session:
            findings.fail_stale_scans(session, silent_for=STALE_AFTER,
                                      keep=self.running_scans(), actor=actor)
            findings.record_risk_snapshot(session, unless_newer_than=RISK_SNAPSHOT_EVERY)
        started: list[str] = []
        with self._lock:
            free = self.max_running - self._alive()
            if free <= 0:
                return started
            with self.db.session() as session:
                due = findings.claim_due_schedules(session, now=now, limit=free)
            for item in due:
                schedule = item.schedule
                try:
                    parsed = self.scan_options(schedule.targets, schedule.ports,
                                               schedule.options)
                except FleetError as exc:
                    self._record_failure(item.scan_id, f"bad schedule: {exc.message}", actor)
                    continue
                self._launch(item.scan_id, parsed, actor)
                started.append(item.scan_id)
        return started

    def running_scans(self) -> set[str]:
        with self._lock:
            return {scan_id for scan_id, t in self._running.items() if t.is_alive()}

    def wait_for_scans(self, timeout: float = 60.0) -> bool:
        """Wait until no scan of these jobs runs (tests, orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._running.values())
            if not threads:
                return True
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                with self._lock:
                    return not self._running

    # The jobs -------------------------------------------------------------------------

    def _alive(self) -> int:
        """Caller holds _lock."""
        return sum(1 for t in self._running.values() if t.is_alive())

    def _reserve(self) -> None:
        """Caller holds _lock."""
        alive = self._alive()
        if alive >= self.max_running:
            raise ScanCapacityError(
                f"{alive} scans are running on this server (at most {self.max_running}); "
                "retry later", retry_after=30,
            )

    def _launch(self, scan_id: str, options: ScanOptions, actor: str) -> None:
        """Caller holds _lock."""
        thread = threading.Thread(
            target=self._job, args=(scan_id, options, actor), name=f"scan-job-{scan_id[:8]}",
            daemon=True,
        )  # fmt: skip
        self._running[scan_id] = thread
        thread.start()

    def _record_failure(self, scan_id: str, reason: str, actor: str) -> None:
        try:
            with self.db.session() as session:
                findings.fail_scan(session, scan_id, reason=reason, actor=actor)
        except FleetError:
            log.exception("could not record the failure of scan %s", scan_id)

    def _job(self, scan_id: str, options: ScanOptions, actor: str) -> None:
        try:
            progress = _Progress()
            document, error = self._scan_recording_progress(scan_id, options, progress)
            if error is not None:
                log.error("scan %s failed: %s", scan_id, error)
                self._record_failure(scan_id, f"{type(error).__name__}: {error}", actor)
                return
            self._store(scan_id, document, progress, options, actor)
        except Exception as exc:  # never let a job thread die silently
            log.exception("scan job %s crashed", scan_id)
            self._record_failure(scan_id, f"internal error: {type(exc).__name__}", actor)
        finally:
            with self._lock:
                self._running.pop(scan_id, None)

    def _scan_recording_progress(
        self, scan_id: str, options: ScanOptions, progress: _Progress
    ) -> tuple[Any, BaseException | None]:
        """Run the scanner in a thread of its own, recording its progress every second.
        -> (the report document, None), or (None, what the scanner raised)."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["document"] = report_document(self._scanner(options, progress))
            except BaseException as exc:  # reported as the scan's failure
                box["error"] = exc

        scanner = threading.Thread(target=work, name=f"scan-{scan_id[:8]}", daemon=True)
        scanner.start()
        while scanner.is_alive():
            scanner.join(PROGRESS_EVERY_S)
            if not scanner.is_alive():
                break
            try:
                with self.db.session() as session:
                    findings.record_scan_progress(
                        session, scan_id, done=progress.done, total=progress.total
                    )
            except FleetError:
                log.warning("could not record the progress of scan %s", scan_id, exc_info=True)
        return box.get("document"), box.get("error")

    def _store(
        self, scan_id: str, document: Any, progress: _Progress, options: ScanOptions, actor: str
    ) -> None:
        # Through JSON, so what is stored is exactly what GET .../report serves.
        document = json.loads(json.dumps(document, default=str))
        try:
            parsed = parse_scan_report(document)
            with self.db.session() as session:
                findings.record_scan_progress(
                    session, scan_id, done=progress.total, total=progress.total
                )
                findings.ingest_report(
                    session, parsed, actor=actor, scan_id=scan_id,
                    scanned_ports=scanned_ports(options),
                )  # fmt: skip
        except FleetError as exc:
            log.error("could not store scan %s: %s", scan_id, exc.message)
            self._record_failure(scan_id, f"storing the report failed: {exc.message}", actor)
