"""A report with every list at its limit still goes out as one message: the agent cuts the
longest lists, counting what it cut, until it fits; the accumulated lists at their limits
fit uncut."""

from __future__ import annotations

import pytest

from fleetguard.agent import encode_within_limit
from fleetguard.protocol import (
    MAX_CONNECTIONS,
    MAX_DESTINATIONS_SEEN,
    MAX_LISTENERS_OPENED,
    MAX_LISTENING,
    MAX_MESSAGE_BYTES,
    MAX_NAME_CHARS,
    MAX_NEW_EXECUTABLES,
    MAX_PATH_CHARS,
    MAX_PROCESSES,
    Connection,
    ContentType,
    DestinationSeen,
    ListenerOpened,
    ListeningSocket,
    NewExecutable,
    ProcessUsage,
    TelemetryReport,
    TransportProto,
    decode_message,
)
from tests.protocol.samples import T0, telemetry

TCP = TransportProto.TCP
V6 = "fe80:1234:5678:9abc:def0:1234:5678:9abc%eth0-longname"  # 52 chars
NAME = "n" * MAX_NAME_CHARS
PATH = "/" + "p" * (MAX_PATH_CHARS - 1)
LISTS = {"connections": "connections_omitted", "listening": "listening_omitted",
         "new_executables": "new_executables_pending",
         "destinations_seen": "destinations_omitted",
         "listeners_opened": "listeners_opened_omitted", "processes": "processes_omitted"}


def _accumulated(path: str, name: str, address: str) -> dict[str, object]:
    return {
        "samples": 300,
        "destinations_seen": [
            DestinationSeen(proto=TCP, address=address, port=p, samples=300, connections=9)
            for p in range(MAX_DESTINATIONS_SEEN)],
        "listeners_opened": [
            ListenerOpened(proto=TCP, address=address, port=p, opened_at_ms=T0, closed=True)
            for p in range(MAX_LISTENERS_OPENED)],
        "processes": [
            ProcessUsage(pid=p, name=name, exe=path, cpu_seconds=12.25, started_at_ms=T0,
                         exited=True) for p in range(MAX_PROCESSES)],
    }


def _worst() -> TelemetryReport:
    return telemetry(
        listening=[ListeningSocket(proto=TCP, address=V6, port=p, pid=p, process=NAME)
                   for p in range(MAX_LISTENING)],
        connections=[Connection(proto=TCP, local_address=V6, local_port=p, remote_address=V6,
                                remote_port=p, pid=p, process=NAME)
                     for p in range(MAX_CONNECTIONS)],
        new_executables=[NewExecutable(path=PATH, sha256="a" * 64, size_bytes=2**40, pid=p)
                         for p in range(MAX_NEW_EXECUTABLES)],
        **_accumulated(PATH, NAME, V6))


@pytest.mark.parametrize("content_type", [ContentType.JSON, ContentType.CBOR])
def test_a_report_with_every_list_full_of_the_longest_values_is_cut_to_fit_and_counted(
    content_type: ContentType,
) -> None:
    full = _worst()
    data = encode_within_limit(full, content_type)
    assert len(data) <= MAX_MESSAGE_BYTES
    sent = decode_message(data, content_type)
    assert isinstance(sent, TelemetryReport)
    for field, counted in LISTS.items():
        kept, before = getattr(sent, field) or [], getattr(full, field) or []
        assert getattr(sent, counted) - getattr(full, counted) == len(before) - len(kept), field
        assert kept == before[:len(kept)], field  # cut from the end: the first ones stay


def test_the_accumulated_lists_full_of_typical_values_fit_one_message_uncut() -> None:
    full = telemetry(**_accumulated("/usr/lib/firmware/bin/streamer-daemon", "streamer",
                                    "203.0.113.200"))
    data = encode_within_limit(full, ContentType.JSON)
    assert decode_message(data, ContentType.JSON) == full
