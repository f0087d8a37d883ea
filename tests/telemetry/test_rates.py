"""Ingestion stores every counter a report carries as a per-second rate (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from fleetguard.core.clock import utcnow
from fleetguard.protocol import InterfaceCounters, NetworkCounters, TelemetryReport
from fleetguard.protocol.counters import Counter
from fleetguard.store import Database
from fleetguard.store.tables import TelemetryReportRow
from fleetguard.telemetry import METRIC_INFO, IngestService, Metric, MetricKind
from tests.telemetry.support import OTHER_BOOT, add_device, body, report

RATE_COLUMNS = [c.value for c in Counter]


def _ifaces(n: int, *, extra: bool = False) -> list[InterfaceCounters]:
    out = [
        InterfaceCounters(name="eth0", bytes_in=6000 * n, bytes_out=600 * n, packets_in=60 * n,
                          packets_out=6 * n, errors_in=n, errors_out=2 * n, drops_in=3 * n, drops_out=4 * n),
        InterfaceCounters(name="lo", bytes_in=10**9 * n, bytes_out=10**9 * n, packets_in=n, packets_out=n),
    ]
    if extra:
        out.append(InterfaceCounters(name="wwan0", bytes_in=10**12, bytes_out=0, packets_in=0, packets_out=0))
    return out


def _net(n: int) -> NetworkCounters:
    return NetworkCounters(
        tcp_active_opens=60 * n, tcp_passive_opens=6 * n, tcp_attempt_fails=12 * n, tcp_estab_resets=n,
        tcp_out_resets=2 * n, tcp_retrans_segs=18 * n, tcp_in_errors=n, udp_in_datagrams=120 * n,
        udp_out_datagrams=60 * n, udp_no_ports=6 * n, udp_in_errors=n)


def _sent(seq: int, at: datetime, n: int, **overrides: object) -> TelemetryReport:
    fields: dict[str, object] = {"interfaces": _ifaces(n), "net": _net(n)}
    fields.update(overrides)
    return report(seq, at, **fields)


def _rows(db: Database) -> list[dict[str, float | None]]:
    with db.session() as session:
        rows = session.execute(select(TelemetryReportRow).order_by(TelemetryReportRow.ts,
                                                                   TelemetryReportRow.seq)).scalars()
        return [{"seq": r.seq, "cpu": r.cpu_percent, **{c: getattr(r, c) for c in RATE_COLUMNS}}
                for r in rows]


def _submit(ingest: IngestService, device: str, *messages: TelemetryReport) -> None:
    for message in messages:
        ingest.submit_telemetry(device, body(message), "application/cbor")
    assert ingest.flush()


def test_every_counter_is_stored_per_second_over_the_gap(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    _submit(ingest, device, _sent(1, start, 1), _sent(2, start + timedelta(minutes=1), 2),
            _sent(3, start + timedelta(minutes=3), 4))  # seq 3: two minutes, twice the counts
    first, second, third = _rows(db)
    expected = {
        "bytes_in": 100.0, "bytes_out": 10.0, "packets_in": 1.0, "packets_out": 0.1,
        "errors_in": 1 / 60, "errors_out": 2 / 60, "drops_in": 3 / 60, "drops_out": 4 / 60,
        "tcp_attempts": 1.0, "tcp_attempt_fails": 0.2, "tcp_inbound": 0.1, "tcp_resets": 3 / 60,
        "tcp_retransmits": 0.3, "tcp_in_errors": 1 / 60, "udp_in": 2.0, "udp_out": 1.0,
        "udp_no_port": 0.1, "udp_in_errors": 1 / 60,
    }
    assert set(expected) == set(RATE_COLUMNS)
    assert {c: second[c] for c in RATE_COLUMNS} == pytest.approx(expected)
    assert {c: third[c] for c in RATE_COLUMNS} == pytest.approx(expected)
    assert all(first[c] is None for c in RATE_COLUMNS)  # a baseline: no rate, not zero
    assert first["cpu"] is not None  # gauges are there all the same


def test_a_reboot_and_a_clock_set_back_are_baselines_not_spikes(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=30)
    _submit(ingest, device,
            _sent(1, start, 50), _sent(2, start + timedelta(minutes=1), 51),
            _sent(3, start + timedelta(minutes=2), 1, boot_id=OTHER_BOOT),  # rebooted: counts anew
            _sent(4, start + timedelta(minutes=3), 2, boot_id=OTHER_BOOT),
            _sent(5, start + timedelta(minutes=2, seconds=30), 3, boot_id=OTHER_BOOT),  # clock back
            _sent(6, start + timedelta(minutes=4), 4, boot_id=OTHER_BOOT))
    by_seq = {r["seq"]: r["bytes_in"] for r in _rows(db)}
    assert by_seq == pytest.approx({1: None, 2: 100.0, 3: None, 4: 100.0, 5: None, 6: 6000 / 90})


def test_a_counter_that_went_down_has_no_rate_while_the_others_do(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    reset = _net(2).model_copy(update={"udp_in_datagrams": 5})
    _submit(ingest, device, _sent(1, start, 1), _sent(2, start + timedelta(minutes=1), 2, net=reset))
    second = _rows(db)[1]
    assert second["udp_in"] is None
    assert second["tcp_attempts"] == pytest.approx(1.0) and second["bytes_in"] == pytest.approx(100.0)


def test_an_interface_that_appears_counts_from_the_next_report(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    _submit(ingest, device, _sent(1, start, 1),
            _sent(2, start + timedelta(minutes=1), 2, interfaces=_ifaces(2, extra=True)),
            _sent(3, start + timedelta(minutes=2), 3, interfaces=_ifaces(3, extra=True)))
    assert [r["bytes_in"] for r in _rows(db)] == pytest.approx([None, 100.0, 100.0])


def test_a_report_without_kernel_counters_stores_interface_rates_only(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    _submit(ingest, device, _sent(1, start, 1, net=None), _sent(2, start + timedelta(minutes=1), 2, net=None))
    second = _rows(db)[1]
    assert second["bytes_in"] == pytest.approx(100.0)
    assert second["tcp_attempts"] is None and second["udp_in"] is None


def test_the_reference_outlives_the_service(db: Database) -> None:
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    for seq in (1, 2):
        with IngestService(db, sweep_every_s=None, compact_every_s=None) as service:
            _submit(service, device, _sent(seq, start + timedelta(minutes=seq), seq))
    assert [r["bytes_in"] for r in _rows(db)] == pytest.approx([None, 100.0])


def test_reports_with_the_sampled_fields_are_stored_alike(db: Database, ingest: IngestService) -> None:
    if "destinations_seen" not in TelemetryReport.model_fields:
        pytest.skip("the protocol has no sampled fields yet")
    device = add_device(db)
    start = utcnow() - timedelta(minutes=10)
    sampled = {"samples": 12, "destinations_seen": [
        {"proto": "tcp", "address": "203.0.113.50", "port": 4444, "samples": 1, "connections": 3}]}
    _submit(ingest, device, _sent(1, start, 1, **sampled), _sent(2, start + timedelta(minutes=1), 2))
    assert [r["bytes_in"] for r in _rows(db)] == pytest.approx([None, 100.0])


def test_every_counter_is_a_rate_metric_per_second() -> None:
    for counter in Counter:
        info = METRIC_INFO[Metric(counter.value)]
        assert info.kind is MetricKind.RATE and info.unit.endswith("/s"), counter
