"""What a sampling agent accumulated over a report period is additive to version 1: optional,
bounded, and a report without it (an older agent's) stays valid."""

from __future__ import annotations

import json

import pytest

from fleetguard.protocol import (
    MAX_DESTINATIONS_SEEN,
    MAX_LISTENERS_OPENED,
    MAX_PROCESSES,
    ContentType,
    DestinationSeen,
    ListenerOpened,
    MessageRejectedError,
    ProcessUsage,
    RejectReason,
    TelemetryReport,
    decode_message,
    encode_message,
)

from .samples import T0, telemetry, telemetry_with_activity

BOTH = [ContentType.JSON, ContentType.CBOR]
ACCUMULATED = ("samples", "destinations_seen", "destinations_omitted", "listeners_opened",
               "listeners_opened_omitted", "processes", "processes_omitted")


def test_pinned_field_names_of_the_accumulated_parts() -> None:
    assert list(DestinationSeen.model_fields) == [
        "proto", "address", "port", "samples", "connections"]
    assert list(ListenerOpened.model_fields) == [
        "proto", "address", "port", "opened_at_ms", "closed"]
    assert list(ProcessUsage.model_fields) == [
        "pid", "name", "exe", "cpu_seconds", "started_at_ms", "exited"]
    assert list(TelemetryReport.model_fields)[-len(ACCUMULATED):] == list(ACCUMULATED)


def test_the_accumulated_wire_form_is_pinned() -> None:
    raw = json.loads(encode_message(telemetry_with_activity(), ContentType.JSON))
    assert raw["samples"] == 300
    assert raw["destinations_seen"][1] == {"proto": "tcp", "address": "198.51.100.66",
                                           "port": 6667, "samples": 60, "connections": 60}
    assert raw["listeners_opened"] == [{"proto": "tcp", "address": "0.0.0.0", "port": 4444,
                                        "opened_at_ms": T0 + 12_000, "closed": True}]
    assert raw["processes"][0] == {"pid": 4242, "name": "kdevtmpfsi", "exe": "/tmp/kdevtmpfsi",
                                   "cpu_seconds": 297.5, "started_at_ms": T0 + 1_000,
                                   "exited": False}
    assert "exe" not in raw["processes"][1]  # None is left out
    assert (raw["destinations_omitted"], raw["listeners_opened_omitted"],
            raw["processes_omitted"]) == (2, 0, 40)


@pytest.mark.parametrize("content_type", BOTH)
def test_a_report_with_what_the_agent_accumulated_round_trips(content_type: ContentType) -> None:
    report = telemetry_with_activity()
    assert decode_message(encode_message(report, content_type), content_type) == report


@pytest.mark.parametrize("content_type", BOTH)
def test_an_older_agents_report_without_the_accumulated_fields_is_valid(
    content_type: ContentType,
) -> None:
    raw = json.loads(encode_message(telemetry(), ContentType.JSON))
    for name in ACCUMULATED:
        raw.pop(name, None)
    data = json.dumps(raw).encode() if content_type is ContentType.JSON else (
        encode_message(TelemetryReport.model_validate(raw, strict=False), content_type))
    report = decode_message(data, content_type)
    assert isinstance(report, TelemetryReport)
    assert (report.samples, report.destinations_seen, report.listeners_opened,
            report.processes) == (None, None, None, None)
    assert report.destinations_omitted == report.processes_omitted == 0


def test_an_agent_that_does_not_sample_sends_none_of_the_lists() -> None:
    raw = json.loads(encode_message(telemetry(), ContentType.JSON))
    assert not {"samples", "destinations_seen", "listeners_opened", "processes"} & set(raw)


@pytest.mark.parametrize(("field", "limit", "item"), [
    ("destinations_seen", MAX_DESTINATIONS_SEEN,
     {"proto": "tcp", "address": "203.0.113.9", "port": 1, "samples": 1, "connections": 1}),
    ("listeners_opened", MAX_LISTENERS_OPENED,
     {"proto": "udp", "address": "::", "port": 1, "opened_at_ms": T0}),
    ("processes", MAX_PROCESSES, {"pid": 1, "name": "init", "cpu_seconds": 0.0}),
])
@pytest.mark.parametrize("content_type", BOTH)
def test_each_list_is_bounded_by_its_limit(
    content_type: ContentType, field: str, limit: int, item: dict[str, object],
) -> None:
    raw = json.loads(encode_message(telemetry(), ContentType.JSON))
    raw[field] = [item] * limit
    at_limit = json.dumps(raw).encode()
    assert isinstance(decode_message(at_limit, ContentType.JSON), TelemetryReport)
    raw[field] = [item] * (limit + 1)
    over = json.dumps(raw).encode()
    if content_type is ContentType.CBOR:
        import cbor2

        over = cbor2.dumps(raw)
    with pytest.raises(MessageRejectedError) as refused:
        decode_message(over, content_type)
    assert refused.value.reason is RejectReason.TOO_MANY_ITEMS
    assert field in str(refused.value)


@pytest.mark.parametrize(("model", "fields"), [
    (DestinationSeen, {"proto": "tcp", "address": "not-an-ip", "port": 1, "samples": 1,
                       "connections": 1}),
    (DestinationSeen, {"proto": "tcp", "address": "10.0.0.1", "port": 70_000, "samples": 1,
                       "connections": 1}),
    (ProcessUsage, {"pid": 1, "name": "x", "cpu_seconds": -1.0}),
    (ProcessUsage, {"pid": 1, "name": "", "cpu_seconds": 1.0}),
    (ListenerOpened, {"proto": "sctp", "address": "::", "port": 1, "opened_at_ms": T0}),
])
def test_a_bad_accumulated_item_is_refused(model: type, fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        model.model_validate(fields, strict=False)
