"""The report hook: every newly stored report, validated, after its batch committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from fleetguard.core.clock import utcnow
from fleetguard.protocol import TelemetryReport
from fleetguard.store import Database
from fleetguard.store.tables import TelemetryReportRow
from fleetguard.telemetry import IngestService, RetentionPolicy
from tests.telemetry.support import add_device, body, report

STRANGER = "00000000-0000-4000-8000-000000000001"


class Recorder:
    """A hook as detection would write one: it only appends (never blocks)."""

    def __init__(self, db: Database, *, fail_every: int = 0) -> None:
        self.db = db
        self.seen: list[tuple[str, TelemetryReport]] = []
        self.stored_when_called: list[bool] = []
        self.threads: set[str] = set()
        self.fail_every = fail_every

    def __call__(self, device_id: str, message: TelemetryReport) -> None:
        self.seen.append((device_id, message))
        self.threads.add(threading.current_thread().name)
        if self.fail_every and len(self.seen) % self.fail_every == 0:
            raise RuntimeError("the hook's own bug")

    def seqs(self) -> list[int]:
        return [m.seq for _, m in self.seen]


def _stored_rows(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(TelemetryReportRow)).scalar_one())


@pytest.fixture
def recorder(db: Database) -> Recorder:
    return Recorder(db)


@pytest.fixture
def hooked(db: Database, recorder: Recorder) -> Iterator[IngestService]:
    service = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01,
                            on_report=recorder)
    service.start()
    yield service
    service.stop()


def test_the_hook_sees_each_stored_report_validated_in_order_from_the_writer(
    db: Database, hooked: IngestService, recorder: Recorder
) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    sent = [report(seq, start + timedelta(minutes=seq), cpu_percent=float(seq)) for seq in (1, 2, 3)]
    for n, message in enumerate(sent):
        content_type = "application/json" if n % 2 else "application/cbor"
        hooked.submit_telemetry(device, body(message, content_type), content_type)
    assert hooked.flush()
    assert recorder.seqs() == [1, 2, 3]
    assert all(isinstance(m, TelemetryReport) for _, m in recorder.seen)
    assert [m for _, m in recorder.seen] == sent  # the report as the device sent it
    assert {d for d, _ in recorder.seen} == {device}
    assert recorder.threads == {"fleetguard-telemetry-writer"}


def test_the_hook_skips_duplicates_resends_unknown_devices_and_expired_reports(
    db: Database, recorder: Recorder
) -> None:
    device = add_device(db)
    policy = RetentionPolicy(raw=timedelta(days=1))
    start = utcnow() - timedelta(minutes=10)
    messages = {seq: report(seq, start + timedelta(minutes=seq)) for seq in range(1, 6)}
    with IngestService(db, retention=policy, sweep_every_s=None, compact_every_s=None,
                       on_report=recorder) as service:
        for seq in (1, 2, 4):
            service.submit_telemetry(device, body(messages[seq]), "application/cbor")
        service.submit_telemetry(device, body(messages[4]), "application/cbor")  # at least once
        assert service.flush()
        service.submit_telemetry(device, body(messages[2]), "application/cbor")  # resent late
        service.submit_telemetry(device, body(messages[3]), "application/cbor")  # late, new
        service.submit_telemetry(STRANGER, body(messages[5]), "application/cbor")
        service.submit_telemetry(device, body(report(9, utcnow() - timedelta(days=2))),
                                 "application/cbor")
        service.submit_telemetry(device, body(messages[5]), "application/cbor")
        assert service.flush()
        stats = service.stats()
    assert recorder.seqs() == [1, 2, 4, 3, 5]
    assert _stored_rows(db) == 5
    assert stats.duplicates == 2 and stats.dropped_expired == 1 and stats.dropped_unknown_device == 1


def test_a_raising_hook_loses_no_report_and_is_counted(db: Database) -> None:
    device = add_device(db)
    failing = Recorder(db, fail_every=2)
    start = utcnow() - timedelta(minutes=30)
    with IngestService(db, sweep_every_s=None, compact_every_s=None, on_report=failing) as service:
        for seq in range(1, 11):
            service.submit_telemetry(device, body(report(seq, start + timedelta(minutes=seq))),
                                     "application/cbor")
        assert service.flush()
        service.submit_telemetry(device, body(report(11, start + timedelta(minutes=11))),
                                 "application/cbor")
        assert service.flush()  # the writer lives on
        stats = service.stats()
    assert _stored_rows(db) == 11 and stats.stored == 11
    assert failing.seqs() == list(range(1, 12))  # every report offered, also after failures
    assert stats.report_hook_errors == 5
