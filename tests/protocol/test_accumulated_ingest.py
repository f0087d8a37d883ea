"""The server's ingestion takes reports with and without what a sampling agent accumulated
(an older agent's), in both encodings, and hands detection the accumulated fields intact
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from fleetguard.core.clock import utcnow
from fleetguard.detect import Destination, Feature, extract_features
from fleetguard.protocol import TelemetryReport
from fleetguard.store import Database
from fleetguard.telemetry import IngestService
from tests.telemetry.support import add_device, body, report

from .samples import telemetry_with_activity


def test_reports_with_and_without_accumulated_fields_are_stored_and_reach_detection(
    db: Database,
) -> None:
    handed: list[TelemetryReport] = []
    service = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01,
                            on_report=lambda _device, r: handed.append(r))
    service.start()
    try:
        device = add_device(db)
        start = utcnow() - timedelta(minutes=5)
        old = report(1, start)
        activity = telemetry_with_activity()
        new = report(2, start + timedelta(minutes=1), **{
            name: getattr(activity, name) for name in (
                "samples", "destinations_seen", "destinations_omitted", "listeners_opened",
                "processes", "processes_omitted")})
        for message, content_type in ((old, "application/json"), (new, "application/cbor")):
            facts = service.submit_telemetry(device, body(message, content_type), content_type)
            assert facts.seq == message.seq
        assert service.flush()
        stats = service.stats()
    finally:
        service.stop()
    assert stats.stored == 2 and stats.rejected == 0
    assert handed == [old, new]
    _, state = extract_features(None, handed[0])
    vector, _ = extract_features(state, handed[1])
    assert Destination("198.51.100.66", 6667) in vector.new_destinations
    assert vector.get(Feature.TOP_PROCESS_CPU_PERCENT) is not None
