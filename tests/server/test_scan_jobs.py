"""The scans a server runs: each ScanJobs object keeps its own count and scope, and what
the scanner returns or raises becomes the scan's record. The scanner is injected, so
these scans contact nothing."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fleetguard import findings
from fleetguard.core.errors import ValidationFailedError
from fleetguard.findings import ScanCapacityError, ScanStatus
from fleetguard.scan import ScanOptions, ScanReport
from fleetguard.server.scan_jobs import ScanJobs
from fleetguard.server.scan_scope import ScanScope
from fleetguard.store import Database


def _empty_report(options: ScanOptions) -> ScanReport:
    now = dt.datetime.now(dt.UTC)
    return ScanReport(targets=[t.address for t in options.targets], started=now, finished=now,
                      hosts=[], findings=[], notes=[], options={"ports": len(options.ports)})


class HeldScanner:
    """Reports every target down, once released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, options: ScanOptions, progress: Any = None) -> ScanReport:
        assert self.release.wait(30)
        return _empty_report(options)


@pytest.fixture
def held() -> Iterator[HeldScanner]:
    scanner = HeldScanner()
    yield scanner
    scanner.release.set()


def _start(jobs: ScanJobs) -> findings.Scan:
    return jobs.start_scan(actor="t", targets=["127.0.0.1"], ports="9", options={})


def _stored(db: Database, scan_id: str) -> findings.Scan:
    with db.read_session() as session:
        return findings.get_scan(session, scan_id)


def test_each_jobs_object_counts_only_its_own_running_scans(
    sqlite_db: Database, held: HeldScanner
) -> None:
    first = ScanJobs(sqlite_db, scanner=held, max_running=1)
    second = ScanJobs(sqlite_db, scanner=held, max_running=1)
    running = _start(first)
    with pytest.raises(ScanCapacityError):
        _start(first)
    _start(second)
    assert first.running_scans() == {running.id}
    held.release.set()
    assert first.wait_for_scans(30) and second.wait_for_scans(30)
    assert _stored(sqlite_db, running.id).status is ScanStatus.FINISHED


def test_a_scanner_that_raises_fails_its_scan_with_the_reason(sqlite_db: Database) -> None:
    def broken(options: ScanOptions, progress: Any = None) -> ScanReport:
        raise OSError("network unreachable")

    jobs = ScanJobs(sqlite_db, scanner=broken)
    scan = _start(jobs)
    assert jobs.wait_for_scans(30)
    stored = _stored(sqlite_db, scan.id)
    assert stored.status is ScanStatus.FAILED
    assert stored.error == "OSError: network unreachable"


def test_a_target_outside_the_scope_is_refused_before_any_scan_is_recorded(
    sqlite_db: Database, held: HeldScanner
) -> None:
    jobs = ScanJobs(sqlite_db, scope=ScanScope.of(["127.0.0.0/8"]), scanner=held)
    with pytest.raises(ValidationFailedError) as refused:
        jobs.start_scan(actor="t", targets=["192.0.2.7"], ports="9", options={})
    assert refused.value.field == "targets"
    with sqlite_db.read_session() as session:
        assert findings.list_scans(session).scans == []


def test_options_naming_server_files_are_refused(sqlite_db: Database) -> None:
    jobs = ScanJobs(sqlite_db)
    with pytest.raises(ValidationFailedError, match="unknown scan option 'credential_file'"):
        jobs.scan_options(["127.0.0.1"], "9", {"credential_file": "/etc/shadow"})
