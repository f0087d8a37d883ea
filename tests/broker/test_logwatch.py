"""Reading Mosquitto's log: lines as Mosquitto 2.0.11 writes them, no broker needed."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fleetguard.broker._logwatch import (
    BrokerLogWatch,
    MosquittoLogParser,
    Oversize,
    QueueFull,
)

DEVICE = "0b7e8d2c-3f4a-4b5c-8d6e-7f8091a2b3c4"
VICTIM = "9f3c0a55-1d2e-4f60-8a7b-c9d0e1f2a3b4"
T = "2026-01-02T03:04:05: "


def _connected(client_id: str, user: str, protocol: int = 4) -> str:
    return f"{T}New client connected from 10.0.0.7:50212 as {client_id} (p{protocol}, c1, k60, u'{user}')."


def _oversize(client_id: str) -> str:
    return f"{T}Client {client_id} disconnected due to oversize packet."


def test_an_oversized_packet_is_put_down_to_the_certificate_name_of_its_sender() -> None:
    parser = MosquittoLogParser()
    assert parser.feed(f"{T}New connection from 10.0.0.7:50212 on port 8883.") is None
    assert parser.feed(_connected(DEVICE, DEVICE)) is None
    event = parser.feed(_oversize(DEVICE))
    assert event == Oversize(DEVICE, DEVICE)
    assert isinstance(event, Oversize) and event.device_id == DEVICE


def test_a_client_id_borrowed_from_another_device_is_counted_against_the_borrower() -> None:
    parser = MosquittoLogParser()
    parser.feed(_connected(VICTIM, VICTIM))
    parser.feed(_connected(VICTIM, DEVICE, protocol=5))  # takes over the victim's client id
    event = parser.feed(_oversize(VICTIM))
    assert isinstance(event, Oversize) and event.device_id == DEVICE


def test_a_client_id_that_imitates_mosquittos_text_changes_nothing() -> None:
    parser = MosquittoLogParser()
    forged = f"x (p5, c1, k60, u'{VICTIM}')"
    parser.feed(_connected(forged, DEVICE))
    event = parser.feed(_oversize(forged))
    assert isinstance(event, Oversize) and event.device_id == DEVICE
    # An id ending like the oversize notice, in a line that is not one.
    parser.feed(_connected(f"{VICTIM} disconnected due to oversize packet", DEVICE))
    assert parser.feed(
        f"{T}Client {VICTIM} disconnected due to oversize packet closed its connection."
    ) is None


def test_an_unknown_sender_or_one_that_is_not_a_device_is_not_a_device() -> None:
    parser = MosquittoLogParser()
    event = parser.feed(_oversize("<unknown>"))  # over the limit before CONNECT completed
    assert isinstance(event, Oversize) and event.username is None and event.device_id is None
    parser.feed(_connected("fleetguard-ingest", "fleetguard-platform", 5))
    event = parser.feed(_oversize("fleetguard-ingest"))
    assert isinstance(event, Oversize) and event.device_id is None


def test_a_client_that_left_is_forgotten() -> None:
    parser = MosquittoLogParser()
    for ending in ("closed its connection.", "disconnected.", "has exceeded timeout, disconnecting.",
                   "disconnected: Connection reset by peer.",
                   "been disconnected by administrative action."):
        parser.feed(_connected(DEVICE, DEVICE))
        assert parser.connected == 1
        parser.feed(f"{T}Client {DEVICE} {ending}")
        assert parser.connected == 0, ending


def test_a_full_queue_names_the_client() -> None:
    parser = MosquittoLogParser()
    parser.feed(_connected("fleetguard-ingest", "fleetguard-platform", 5))
    event = parser.feed(f"{T}Outgoing messages are being dropped for client fleetguard-ingest.")
    assert event == QueueFull("fleetguard-ingest", "fleetguard-platform")


def _append(path: Path, text: str) -> None:
    with open(path, "ab") as handle:
        handle.write(text.encode())


def test_the_watch_follows_the_file_from_the_offset_and_reads_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    earlier = _connected(DEVICE, DEVICE) + "\n" + _oversize(DEVICE) + "\n"  # a previous run
    _append(log, earlier)
    counted: list[str] = []
    watch = BrokerLogWatch(log, len(earlier.encode()), on_oversize=counted.append)
    assert watch.read() == 0 and counted == []
    # A client id with U+2028 (a line break to str.splitlines, not to Mosquitto).
    odd = f"dev\u2028{uuid.uuid4().hex[:6]}"
    line = _connected(odd, DEVICE) + "\n" + _oversize(odd)
    _append(log, line[:40])
    assert watch.read() == 0
    _append(log, line[40:] + "\n")
    assert watch.read() == 2
    assert counted == [DEVICE]
    assert watch.stats.oversize_by_device == {DEVICE: 1}
    watch.stop()


def test_a_replaced_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    _append(log, "x" * 500 + "\n")
    counted: list[str] = []
    watch = BrokerLogWatch(log, 501, on_oversize=counted.append)
    watch.read()
    fresh = tmp_path / "new.log"
    _append(fresh, _connected(DEVICE, DEVICE) + "\n" + _oversize(DEVICE) + "\n")
    os.replace(fresh, log)
    watch.read()
    assert counted == [DEVICE]
    watch.stop()


def test_the_watch_thread_counts_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.touch()
    counted: list[str] = []
    watch = BrokerLogWatch(log, 0, on_oversize=counted.append, poll=0.01).start()
    _append(log, _connected(DEVICE, DEVICE) + "\n" + _oversize(DEVICE) + "\n")
    watch.stop()  # reads what is left before it ends
    assert counted == [DEVICE]
