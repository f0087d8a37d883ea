"""GET /api/v1/devices/{id}/telemetry and .../telemetry/{metric}: stored telemetry through
the operator API, read with the same permission as the device itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from fleetguard.core.clock import utcnow
from fleetguard.operators import Role
from fleetguard.store import Database
from fleetguard.telemetry import MAX_SERIES_POINTS, IngestService
from tests.api.conftest import new_client
from tests.support import LoggedIn
from tests.telemetry.support import add_device, body, report

MINUTE = timedelta(minutes=1)
UNKNOWN_DEVICE = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def reporting(sqlite_db: Database) -> Iterator[tuple[str, datetime]]:
    """A device that reported cpu 10, 20, ... 60 at each minute of six, from a whole hour."""
    device = add_device(sqlite_db)
    base = (utcnow() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    with IngestService(sqlite_db, sweep_every_s=None, compact_every_s=None) as ingest:
        for i in range(6):
            message = report(i + 1, base + i * MINUTE, cpu_percent=10.0 * (i + 1))
            ingest.submit_telemetry(device, body(message), "application/cbor")
        assert ingest.flush()
    yield device, base


@pytest.fixture
def auditor(login_as: Callable[[Role], LoggedIn]) -> LoggedIn:
    return login_as(Role.AUDITOR)  # the least role that reads devices


def _series(reader: LoggedIn, device: str, metric: str = "cpu_percent",
            **params: str | int) -> tuple[int, dict[str, Any]]:
    r = reader.client.get(f"/api/v1/devices/{device}/telemetry/{metric}", params=params)
    return r.status_code, r.json()


def test_the_device_lists_its_metrics_with_range_and_latest_value(
    reporting: tuple[str, datetime], auditor: LoggedIn
) -> None:
    device, base = reporting
    r = auditor.client.get(f"/api/v1/devices/{device}/telemetry")
    assert r.status_code == 200, r.text
    cpu = next(m for m in r.json()["metrics"] if m["metric"] == "cpu_percent")
    assert cpu["samples"] == 6
    assert datetime.fromisoformat(cpu["first_at"]) == base
    assert datetime.fromisoformat(cpu["latest"]["at"]) == base + 5 * MINUTE
    assert cpu["latest"]["value"] == 60.0


def test_a_series_aggregates_each_step_from_start(
    reporting: tuple[str, datetime], auditor: LoggedIn
) -> None:
    device, base = reporting
    status, series = _series(auditor, device, start=base.isoformat(),
                             end=(base + 6 * MINUTE).isoformat(), step=180, agg="max")
    assert status == 200, series
    assert (series["step_s"], series["agg"]) == (180, "max")
    assert [(datetime.fromisoformat(p["at"]), p["value"]) for p in series["points"]] == [
        (base, 30.0), (base + 3 * MINUTE, 60.0)]


def test_by_default_a_series_is_the_last_hour_by_minute_averages(
    sqlite_db: Database, auditor: LoggedIn
) -> None:
    device = add_device(sqlite_db)
    with IngestService(sqlite_db, sweep_every_s=None, compact_every_s=None) as ingest:
        for seq, ago in ((1, 90), (2, 30)):  # the first is outside the last hour
            message = report(seq, utcnow() - ago * MINUTE, cpu_percent=float(ago))
            ingest.submit_telemetry(device, body(message), "application/cbor")
        assert ingest.flush()
    status, series = _series(auditor, device)
    assert status == 200, series
    assert series["step_s"] == 60 and series["agg"] == "avg"
    assert [p["value"] for p in series["points"]] == [30.0]


def test_unknown_device_or_metric_is_404_with_its_code(
    reporting: tuple[str, datetime], auditor: LoggedIn
) -> None:
    device, _ = reporting
    for path, code in (
        (f"/api/v1/devices/{UNKNOWN_DEVICE}/telemetry", "device_not_found"),
        ("/api/v1/devices/not-a-uuid/telemetry", "device_not_found"),
        (f"/api/v1/devices/{UNKNOWN_DEVICE}/telemetry/cpu_percent", "device_not_found"),
        (f"/api/v1/devices/{device}/telemetry/cpu_temperature", "metric_not_found"),
    ):
        r = auditor.client.get(path)
        assert (r.status_code, r.json()["error"]["code"]) == (404, code), path


@pytest.mark.parametrize(("params", "field", "says"), [
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end", "after start"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z", "step": 60}, "step",
     f"at most {MAX_SERIES_POINTS} points"),
    ({"start": "2026-01-01T00:00:00"}, "start", ""),  # no zone: which hour would it be?
    ({"start": "yesterday"}, "start", ""),
    ({"step": 0}, "step", ""),
    ({"step": "1e400"}, "step", ""),
    ({"agg": "median"}, "agg", "avg"),
    # the calendar's first hour has no hour before it to default to
    ({"end": "0001-01-01T00:30:00+00:00"}, "end", "after start"),
])
def test_a_bad_range_step_or_aggregation_is_422_naming_the_parameter(
    reporting: tuple[str, datetime], auditor: LoggedIn, params: dict[str, str | int],
    field: str, says: str,
) -> None:
    status, error = _series(auditor, reporting[0], **params)
    assert status == 422, error
    assert error["error"]["field"].endswith(field) and says in error["error"]["message"]


def test_without_credentials_it_is_401(app: FastAPI, reporting: tuple[str, datetime]) -> None:
    client = new_client(app)
    for path in (f"/api/v1/devices/{reporting[0]}/telemetry",
                 f"/api/v1/devices/{reporting[0]}/telemetry/cpu_percent"):
        assert client.get(path).status_code == 401


def test_both_routes_are_documented_with_their_models_errors_and_security(
    auditor: LoggedIn,
) -> None:
    paths = auditor.client.get("/api/v1/openapi.json").json()["paths"]
    listing = paths["/api/v1/devices/{device_id}/telemetry"]["get"]
    series = paths["/api/v1/devices/{device_id}/telemetry/{metric}"]["get"]
    for operation, model in ((listing, "DeviceTelemetryOut"), (series, "SeriesOut")):
        assert operation["summary"] and operation["description"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith(f"/{model}")
        assert {"401", "403", "404", "422"} <= operation["responses"].keys()
        assert operation["security"]
    params = {p["name"]: p for p in series["parameters"]}
    assert params["agg"]["schema"]["$ref"].endswith("/Aggregation")
    assert params["step"]["schema"]["minimum"] == 1


# -- units and kinds -----------------------------------------------------------------------

EXPECTED_UNITS = {
    "cpu_percent": ("%", "gauge"), "load_1": ("tasks", "gauge"),
    "memory_used_percent": ("%", "gauge"), "disk_used_percent": ("%", "gauge"),
    "bytes_in": ("bytes/s", "rate"), "bytes_out": ("bytes/s", "rate"),
    "packets_in": ("packets/s", "rate"), "packets_out": ("packets/s", "rate"),
    "tcp_attempts": ("connections/s", "rate"), "tcp_attempt_fails": ("connections/s", "rate"),
    "connections": ("count", "gauge"), "remote_peers": ("count", "gauge"),
    "listening_ports": ("count", "gauge"), "auth_failures": ("count", "per_report"),
    "new_executables": ("count", "per_report"), "process_count": ("count", "gauge"),
    "uptime_s": ("s", "gauge"), "tcp_inbound": ("connections/s", "rate"),
    "tcp_resets": ("resets/s", "rate"), "tcp_retransmits": ("segments/s", "rate"),
    "tcp_in_errors": ("segments/s", "rate"), "udp_in": ("datagrams/s", "rate"),
    "udp_out": ("datagrams/s", "rate"), "udp_no_port": ("datagrams/s", "rate"),
    "udp_in_errors": ("datagrams/s", "rate"), "errors_in": ("packets/s", "rate"),
    "errors_out": ("packets/s", "rate"), "drops_in": ("packets/s", "rate"),
    "drops_out": ("packets/s", "rate"),
}


def test_every_stored_metric_states_its_unit_and_kind(
    reporting: tuple[str, datetime], auditor: LoggedIn
) -> None:
    r = auditor.client.get(f"/api/v1/devices/{reporting[0]}/telemetry")
    listed = {m["metric"]: (m["unit"], m["kind"]) for m in r.json()["metrics"]}
    assert listed == EXPECTED_UNITS  # the sample report carries every metric
    assert all(m["label"] for m in r.json()["metrics"])


def test_a_counter_series_is_in_bytes_per_second_without_the_first_reports_total(
    reporting: tuple[str, datetime], auditor: LoggedIn
) -> None:
    device, base = reporting
    status, series = _series(auditor, device, "bytes_in", start=base.isoformat(),
                             end=(base + 10 * MINUTE).isoformat(), step=60)
    assert status == 200, series
    assert (series["unit"], series["kind"]) == ("bytes/s", "rate")
    # The sample's interface counters do not move: 0 bytes/s, from the second report on.
    assert [p["value"] for p in series["points"]] == [0.0] * 5
    assert datetime.fromisoformat(series["points"][0]["at"]) == base + MINUTE
    status, cpu = _series(auditor, device, start=base.isoformat(), step=60)
    assert (cpu["unit"], cpu["kind"]) == ("%", "gauge")


def test_units_and_kinds_are_documented_in_the_openapi(auditor: LoggedIn) -> None:
    document = auditor.client.get("/api/v1/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["MetricUnit"]["enum"]) == {u for u, _ in EXPECTED_UNITS.values()}
    assert set(schemas["MetricKind"]["enum"]) == {"gauge", "rate", "per_report"}
    for model in ("SeriesOut", "MetricOut"):
        fields = schemas[model]["properties"]
        assert {"unit", "kind"} <= fields.keys() and {"unit", "kind"} <= set(schemas[model]["required"])
        assert "bytes/s" in fields["unit"]["description"]
    series = document["paths"]["/api/v1/devices/{device_id}/telemetry/{metric}"]["get"]
    assert "rates per second" in series["description"]
