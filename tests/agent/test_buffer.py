"""The outbox: order, bounds with drop-oldest counting, persistence, crash safety."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fleetguard.agent import OutboxError, ReportBuffer
from fleetguard.core.errors import ConfigurationError
from fleetguard.protocol import ContentType

CBOR = ContentType.CBOR


def open_box(tmp_path, *, max_items=100, max_bytes=1 << 20):
    return ReportBuffer(tmp_path / "state" / "outbox.sqlite3", max_items=max_items, max_bytes=max_bytes)


def payloads(box, limit=1000):
    return [item.payload for item in box.peek(limit)]


def test_delivers_in_order_and_ack_removes_through_a_position(tmp_path):
    with open_box(tmp_path) as box:
        positions = [box.push(f"m{i}".encode(), CBOR) for i in range(5)]
        assert positions == sorted(positions)
        assert payloads(box) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        first_two = box.peek(2)
        assert [item.payload for item in first_two] == [b"m0", b"m1"]
        box.ack(first_two[-1].position)
        assert payloads(box) == [b"m2", b"m3", b"m4"]
        assert len(box) == 3 and box.size_bytes == 6
        box.push(b"json", ContentType.JSON)
        assert box.peek(10)[-1].content_type is ContentType.JSON
        box.ack(box.peek(10)[-1].position)
        assert len(box) == 0 and box.peek() == [] and box.size_bytes == 0


def test_count_bound_drops_the_oldest_and_counts_them(tmp_path):
    with open_box(tmp_path, max_items=3) as box:
        for i in range(10):
            box.push(f"m{i}".encode(), CBOR)
        assert payloads(box) == [b"m7", b"m8", b"m9"]
        assert box.dropped_total == 7 and len(box) == 3


def test_byte_bound_drops_the_oldest_and_counts_them(tmp_path):
    with open_box(tmp_path, max_items=1000, max_bytes=100) as box:
        for i in range(10):
            box.push(bytes([65 + i]) * 30, CBOR)
        assert payloads(box) == [b"H" * 30, b"I" * 30, b"J" * 30]
        assert box.size_bytes == 90 and box.dropped_total == 7
        with pytest.raises(OutboxError):
            box.push(b"x" * 101, CBOR)
        assert len(box) == 3  # a refused push changes nothing


def test_nothing_is_lost_or_reordered_across_a_reopen(tmp_path):
    with open_box(tmp_path, max_items=4) as box:
        for i in range(6):
            box.push(f"m{i}".encode(), CBOR)
        box.ack(box.peek()[0].position)
        seqs = [box.next_report_seq() for _ in range(3)]
    assert seqs == [0, 1, 2]
    with open_box(tmp_path, max_items=4) as box:
        assert payloads(box) == [b"m3", b"m4", b"m5"]
        assert box.dropped_total == 2 and len(box) == 3 and box.size_bytes == 6
        assert box.next_report_seq() == 3  # the sequence survives restarts
        box.push(b"m6", CBOR)
        assert payloads(box)[-1] == b"m6"
    with open_box(tmp_path, max_items=2) as box:  # reopened with a smaller bound
        assert payloads(box) == [b"m5", b"m6"] and box.dropped_total == 4


def test_a_push_survives_the_process_being_killed(tmp_path):
    path = tmp_path / "state" / "outbox.sqlite3"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from fleetguard.agent import ReportBuffer
        from fleetguard.protocol import ContentType
        box = ReportBuffer(Path({str(path)!r}), max_items=100, max_bytes=1 << 20)
        for i in range(20):
            box.push(b"report-%d" % i, ContentType.CBOR)
        os._exit(9)  # no close, no flush: like a crash
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert result.returncode == 9
    with ReportBuffer(path, max_items=100, max_bytes=1 << 20) as box:
        assert payloads(box) == [b"report-%d" % i for i in range(20)]


def test_a_corrupt_file_is_moved_aside_not_fatal(tmp_path):
    path = tmp_path / "state" / "outbox.sqlite3"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 100)
    with ReportBuffer(path, max_items=10, max_bytes=1 << 20) as box:
        box.push(b"fresh", CBOR)
        assert payloads(box) == [b"fresh"]
    assert list(path.parent.glob("outbox.sqlite3.corrupt-*"))


def test_file_is_private(tmp_path):
    with open_box(tmp_path) as box:
        box.push(b"x", CBOR)
    path = tmp_path / "state" / "outbox.sqlite3"
    assert path.stat().st_mode & 0o077 == 0


def test_bad_bounds_are_refused(tmp_path):
    with pytest.raises(ConfigurationError):
        open_box(tmp_path, max_items=0)
