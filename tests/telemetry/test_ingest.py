"""Ingestion: decode, validate, dedupe and store; read the series back (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from fleetguard.core.clock import utcnow
from fleetguard.protocol import (
    InterfaceCounters,
    ListeningSocket,
    MessageRejectedError,
    NetworkCounters,
    RejectReason,
    TransportProto,
    encode_message,
    to_millis,
)
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.store.tables import TelemetryReportRow
from fleetguard.telemetry import (
    UNKNOWN_DEVICE,
    IngestService,
    Metric,
    RetentionPolicy,
    device_status,
    latest_snapshot,
    read_series,
    rejection_counts,
)
from tests.protocol import samples
from tests.telemetry.support import OTHER_BOOT, add_device, body, report


def _ifaces(n: int) -> list[InterfaceCounters]:
    return [
        InterfaceCounters(name="eth0", bytes_in=1000 * n, bytes_out=300 * n, packets_in=10 * n,
                          packets_out=3 * n),
        InterfaceCounters(name="wlan0", bytes_in=1 * n, bytes_out=2 * n, packets_in=1, packets_out=1),
        InterfaceCounters(name="lo", bytes_in=10**9 * n, bytes_out=10**9 * n, packets_in=1, packets_out=1),
    ]


def _net(opens: int) -> NetworkCounters:
    return samples.telemetry().net.model_copy(update={"tcp_active_opens": opens})  # type: ignore[union-attr]


def _rows(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(TelemetryReportRow)).scalar_one())


def test_reports_in_both_encodings_are_stored_and_read_back(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=5)
    for seq in (1, 2, 3):
        at = start + timedelta(minutes=seq)
        message = report(seq, at, cpu_percent=10.0 * seq, interfaces=_ifaces(seq), net=_net(5 * seq))
        content_type = "application/json" if seq % 2 else "application/cbor"
        assert ingest.submit_telemetry(device, body(message, content_type), content_type).seq == seq
    assert ingest.flush()
    with db.session() as session:
        cpu = read_series(session, device, Metric.CPU_PERCENT, since=start)
        bytes_in = read_series(session, device, Metric.BYTES_IN, since=start)
        attempts = read_series(session, device, Metric.TCP_ATTEMPTS, since=start)
        conns = read_series(session, device, Metric.CONNECTIONS, since=start)
        status = device_status(session, device)
        snapshot = latest_snapshot(session, device)
    assert [s.value for s in cpu] == [10.0, 20.0, 30.0]
    assert [s.at for s in cpu] == [
        (start + timedelta(minutes=n)).replace(microsecond=(start + timedelta(minutes=n)).microsecond // 1000 * 1000)
        for n in (1, 2, 3)
    ]
    # Per second, loopback left out; the first report of a boot is a baseline: no rate.
    assert [s.value for s in bytes_in] == pytest.approx([1001 / 60, 1001 / 60])
    assert [s.value for s in attempts] == pytest.approx([5 / 60, 5 / 60])
    assert [s.at for s in bytes_in] == [s.at for s in cpu[1:]]
    assert [s.value for s in conns] == [2.0, 2.0, 2.0]
    assert status is not None and status.online and status.last_seq == 3
    assert status.interval == timedelta(minutes=1)  # learned from period_start_ms
    assert snapshot is not None and {s["port"] for s in snapshot.listening} == {22, 5353}
    assert snapshot.connections[0]["remote_address"] == "203.0.113.9"
    assert {e["path"] for e in snapshot.new_executables} == {"/tmp/.x/mirai", "/usr/bin/huge"}
    stats = ingest.stats()
    assert stats.stored == 3 and stats.duplicates == 0 and stats.queued == 0


def test_duplicates_are_stored_once(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    messages = [report(seq, start + timedelta(minutes=seq)) for seq in range(1, 5)]
    for message in messages:
        ingest.submit_telemetry(device, body(message), "application/cbor")
        ingest.submit_telemetry(device, body(message), "application/cbor")  # at least once
    assert ingest.flush()
    # Delivered again later, out of order, and the same seq from another boot (a new report).
    ingest.submit_telemetry(device, body(messages[1]), "application/cbor")
    ingest.submit_telemetry(device, body(messages[3]), "application/cbor")
    ingest.submit_telemetry(device, body(report(2, boot=OTHER_BOOT, seq_unused=None)
                                         if False else report(9, boot=OTHER_BOOT)), "application/cbor")
    assert ingest.flush()
    assert _rows(db) == 5
    assert ingest.stats().duplicates == 6


def test_a_late_report_is_kept_without_disturbing_the_rates(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    for seq in (1, 3):
        ingest.submit_telemetry(device, body(report(seq, start + timedelta(minutes=seq), interfaces=_ifaces(seq))),
                                "application/cbor")
    assert ingest.flush()
    ingest.submit_telemetry(device, body(report(2, start + timedelta(minutes=2), interfaces=_ifaces(2))),
                            "application/cbor")
    ingest.submit_telemetry(device, body(report(4, start + timedelta(minutes=4), interfaces=_ifaces(4))),
                            "application/cbor")
    assert ingest.flush()
    with db.session() as session:
        values = [s.value for s in read_series(session, device, Metric.BYTES_IN, since=start)]
        status = device_status(session, device)
    # seq 3 over the 2 minutes since seq 1; seq 2 came late: stored, no rate; seq 4 after 3
    assert values == pytest.approx([1001 / 60, 1001 / 60])
    assert len(read_cpu(db, device, start)) == 4
    assert status is not None and status.last_seq == 4


def read_cpu(db: Database, device: str, since) -> list[float]:  # type: ignore[no-untyped-def]
    with db.session() as session:
        return [s.value for s in read_series(session, device, Metric.CPU_PERCENT, since=since)]


def _bad_messages() -> list[tuple[RejectReason, bytes, str]]:
    good = samples.telemetry()
    as_json = json.loads(encode_message(good, "application/json"))
    def js(**changes: object) -> bytes:
        return json.dumps({**as_json, **changes}).encode()
    return [
        (RejectReason.MALFORMED, b"{not json", "application/json"),
        (RejectReason.MALFORMED, b"\xff\x00", "application/cbor"),
        (RejectReason.TOO_LARGE, b" " * (256 * 1024 + 1), "application/json"),
        (RejectReason.TOO_DEEP, b"[" * 100 + b"]" * 100, "application/json"),
        (RejectReason.UNKNOWN_VERSION, js(v=2), "application/json"),
        (RejectReason.UNKNOWN_KIND, js(type="selfie"), "application/json"),
        (RejectReason.UNEXPECTED_KIND, encode_message(samples.heartbeat(), "application/json"), "application/json"),
        (RejectReason.WRONG_TYPE, js(cpu_percent="high"), "application/json"),
        (RejectReason.INVALID, js(cpu_percent=250.0), "application/json"),
        (RejectReason.TOO_MANY_ITEMS, js(disks=[as_json["disks"][0]] * 33), "application/json"),
        (RejectReason.STRING_TOO_LONG, js(agent_version="x" * 65), "application/json"),
        (RejectReason.UNSUPPORTED_CONTENT_TYPE, b"{}", "text/plain"),
        (RejectReason.INVALID, js(seq=2**63), "application/json"),
    ]


def test_each_rejection_reason_is_counted_per_device_while_good_telemetry_flows(
    db: Database, ingest: IngestService
) -> None:
    noisy, quiet = add_device(db, "noisy"), add_device(db, "quiet")
    start = utcnow() - timedelta(minutes=30)
    expected: dict[str, int] = {}
    seq = 0
    for reason, data, content_type in _bad_messages():
        with pytest.raises(MessageRejectedError) as refused:
            ingest.submit_telemetry(noisy, data, content_type)
        assert refused.value.reason is reason
        expected[reason.value] = expected.get(reason.value, 0) + 1
        seq += 1
        for device in (noisy, quiet):
            ingest.submit_telemetry(device, body(report(seq, start + timedelta(minutes=seq))), "application/cbor")
    assert ingest.flush()
    with db.session() as session:
        assert rejection_counts(session) == {noisy: expected}
        assert rejection_counts(session, quiet) == {}
    assert read_cpu(db, noisy, start) == [12.5] * seq
    assert read_cpu(db, quiet, start) == [12.5] * seq
    # Counts accumulate across batches.
    with pytest.raises(MessageRejectedError):
        ingest.submit_telemetry(noisy, b"{", "application/json")
    assert ingest.flush()
    with db.session() as session:
        assert rejection_counts(session)[noisy]["malformed"] == expected["malformed"] + 1


def test_heartbeats_keep_a_device_seen(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    ingest.submit_heartbeat(device, encode_message(samples.heartbeat(), "application/cbor"), "application/cbor")
    assert ingest.flush()
    with db.session() as session:
        status = device_status(session, device)
    assert status is not None and status.agent_version == "0.1.0" and status.last_seq is None
    assert abs((utcnow() - status.last_seen_at).total_seconds()) < 10
    with pytest.raises(MessageRejectedError) as refused:
        ingest.submit_heartbeat(device, body(report(1)), "application/cbor")
    assert refused.value.reason is RejectReason.UNEXPECTED_KIND


def test_unknown_device_is_counted_not_stored(db: Database, ingest: IngestService) -> None:
    stranger = "00000000-0000-4000-8000-000000000001"
    ingest.submit_telemetry(stranger, body(report(1)), "application/cbor")
    assert ingest.flush()
    assert _rows(db) == 0
    with db.session() as session:
        assert rejection_counts(session) == {stranger: {UNKNOWN_DEVICE: 1}}


def test_clock_skew_and_retention(db: Database) -> None:
    device = add_device(db)
    policy = RetentionPolicy(raw=timedelta(days=1), max_clock_skew=timedelta(minutes=5))
    with IngestService(db, retention=policy, sweep_every_s=None, compact_every_s=None) as service:
        now = utcnow()
        service.submit_telemetry(device, body(report(1, now - timedelta(days=2))), "application/cbor")
        service.submit_telemetry(device, body(report(2, now + timedelta(days=3))), "application/cbor")
        assert service.flush()
        stats = service.stats()
    with db.session() as session:
        samples_ = read_series(session, device, Metric.CPU_PERCENT, since=now - timedelta(days=9))
    assert stats.dropped_expired == 1
    assert len(samples_) == 1 and abs((samples_[0].at - now).total_seconds()) < 10  # filed on arrival


def test_stop_stores_everything_accepted(db: Database) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(hours=1)
    service = IngestService(db, sweep_every_s=None, compact_every_s=None)
    for seq in range(1, 501):
        service.submit_telemetry(device, body(report(seq, start + timedelta(seconds=seq))), "application/cbor")
    service.stop()
    assert _rows(db) == 500
    assert to_millis(start) > 0


def test_latest_snapshot_follows_every_report_whether_or_not_its_sockets_changed(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    first = samples.telemetry().listening
    other = [ListeningSocket(proto=TransportProto.TCP, address="0.0.0.0", port=4444, process="sh")]
    start = utcnow() - timedelta(minutes=5)
    seen: list[tuple[list[int], int | None]] = []
    for seq, listening in enumerate([first, first, other, other, first], start=1):
        sent = report(seq, start + timedelta(seconds=seq), listening=listening)
        ingest.submit_telemetry(device, body(sent), "application/cbor")
        assert ingest.flush()
        with db.session() as session:
            snapshot = latest_snapshot(session, device)
        assert snapshot is not None and snapshot.at is not None
        seen.append(([s["port"] for s in snapshot.listening], to_millis(snapshot.at)))
        assert seen[-1][1] == sent.collected_at_ms
    assert [ports for ports, _ in seen] == [[22, 5353], [22, 5353], [4444], [4444], [22, 5353]]


def test_ingestion_records_registry_last_seen(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    with db.session() as session:
        assert registry.get_device(session, device).last_seen_at is None
    ingest.submit_heartbeat(device, encode_message(samples.heartbeat(), "application/cbor"),
                            "application/cbor")
    assert ingest.flush()
    with db.session() as session:
        seen = registry.get_device(session, device).last_seen_at
    assert seen is not None and abs((utcnow() - seen).total_seconds()) < 60


def _writer(db: Database) -> IngestService:
    """One of several processes storing telemetry (``serve --device-workers``)."""
    service = IngestService(db, sweep_every_s=None, compact_every_s=None, linger_s=0.01,
                            exclusive_writer=False)
    service.start()
    return service


def _store(service: IngestService, device: str, seq: int, start) -> None:  # type: ignore[no-untyped-def]
    at = start + timedelta(minutes=seq)
    service.submit_telemetry(device, body(report(seq, at, interfaces=_ifaces(seq))), "application/cbor")
    assert service.flush()


def test_rates_stay_right_when_a_devices_reports_alternate_between_writers(db: Database) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    first, second = _writer(db), _writer(db)
    try:
        for seq, writer in ((1, first), (2, second), (3, first), (4, second)):
            _store(writer, device, seq, start)
    finally:
        first.stop()
        second.stop()
    with db.session() as session:
        values = [s.value for s in read_series(session, device, Metric.BYTES_IN, since=start)]
    # each against the report before it, whoever stored it (the first is a baseline)
    assert values == pytest.approx([1001 / 60] * 3)


def test_a_late_report_at_another_writer_does_not_move_the_device_back(db: Database) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    first, second = _writer(db), _writer(db)
    try:
        _store(first, device, 1, start)
        _store(second, device, 3, start)
        _store(first, device, 2, start)  # late: the first writer last saw seq 1
    finally:
        first.stop()
        second.stop()
    with db.session() as session:
        status = device_status(session, device)
        values = [s.value for s in read_series(session, device, Metric.BYTES_IN, since=start)]
    assert status is not None and status.last_seq == 3
    assert values == pytest.approx([1001 / 60])  # seq 3 against seq 1; seq 2 late: no rate
