"""Collectors return real values from this machine (loopback only)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fleetguard.agent import (
    AgentConfig,
    AuthFailureCounter,
    TelemetryCollector,
    boot_id,
    collect_interfaces,
    collect_network_counters,
    collect_sockets,
    encode_within_limit,
)
from fleetguard.agent._executables import ExecutableTracker
from fleetguard.protocol import (
    MAX_MESSAGE_BYTES,
    Connection,
    ContentType,
    TelemetryReport,
    TransportProto,
    decode_message,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
def config(tmp_path):
    (tmp_path / "auth.log").write_text("")
    return AgentConfig(state_dir=tmp_path / "state", interval_s=1, auth_logs=(tmp_path / "auth.log",))


def test_a_listening_tcp_and_udp_socket_appear_with_the_process():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = server.getsockname()[1], udp.getsockname()[1]
        snapshot = collect_sockets()
    ours = {(s.proto, s.address, s.port): s for s in snapshot.listening}
    tcp = ours[(TransportProto.TCP, "127.0.0.1", tcp_port)]
    assert (TransportProto.UDP, "127.0.0.1", udp_port) in ours
    import os

    assert tcp.pid == os.getpid() and tcp.process


def test_an_established_connection_appears_with_its_remote_end():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            peer, _ = server.accept()
            with peer:
                local_port = client.getsockname()[1]
                snapshot = collect_sockets()
    outbound = [
        c for c in snapshot.connections
        if c.remote_port == port and c.local_port == local_port
    ]
    assert outbound and outbound[0].proto is TransportProto.TCP
    assert outbound[0].remote_address == "127.0.0.1"


def test_loopback_counters_and_connection_attempts_grow_with_traffic():
    before_if = {i.name: i for i in collect_interfaces()}
    before_net = collect_network_counters()
    assert "lo" in before_if and before_net is not None
    payload = b"x" * 200_000
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(payload)
                    got = 0
                    while got < len(payload):
                        got += len(peer.recv(65536))
    after_if = {i.name: i for i in collect_interfaces()}
    after_net = collect_network_counters()
    assert after_net is not None
    assert after_if["lo"].bytes_in - before_if["lo"].bytes_in >= 5 * len(payload)
    assert after_if["lo"].packets_out > before_if["lo"].packets_out
    assert after_net.tcp_active_opens - before_net.tcp_active_opens >= 5
    assert after_net.tcp_passive_opens - before_net.tcp_passive_opens >= 5


def test_a_new_executable_copied_and_run_is_reported_with_its_hash(tmp_path, config):
    collector = TelemetryCollector(config)
    baseline = collector.collect(seq=0)
    while baseline.new_executables_pending:  # drain what was already running
        baseline = collector.collect(seq=0)
    sleeper = tmp_path / "bin" / "not-a-miner"
    sleeper.parent.mkdir()
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", sleeper)
    process = subprocess.Popen([str(sleeper), "30"])
    try:
        time.sleep(0.1)
        report = collector.collect(seq=1)
    finally:
        process.kill()
        process.wait()
    found = [e for e in report.new_executables if e.path == str(sleeper)]
    assert found, [e.path for e in report.new_executables]
    assert found[0].sha256 == hashlib.sha256(sleeper.read_bytes()).hexdigest()
    assert found[0].pid == process.pid
    # Seen once, never again: not in the next report, nor after a restart.
    assert all(e.path != str(sleeper) for e in collector.collect(seq=2).new_executables)


def test_known_executables_survive_a_restart_and_hashing_is_bounded(tmp_path):
    sleeper = tmp_path / "sleepy"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", sleeper)
    process = subprocess.Popen([str(sleeper), "30"])
    state = tmp_path / "known.json"
    try:
        time.sleep(0.1)
        tracker = ExecutableTracker(state_path=state, max_hashes=1, max_file_bytes=10)
        first, pending = tracker.observe([process.pid, *psutil.pids()])
        assert len(first) == 1 and first[0].path == str(sleeper)  # one hash per report
        assert first[0].sha256 is None  # over the 10-byte cap: reported without a hash
        assert pending >= 1  # the others wait for the next report
        second, left = tracker.observe([])
        assert len(second) == 1 and left == pending - 1
        assert first[0].size_bytes == sleeper.stat().st_size
        restarted = ExecutableTracker(state_path=state, max_hashes=4, max_file_bytes=2**30)
        again, _ = restarted.observe([process.pid])
        assert again == []
    finally:
        process.kill()
        process.wait()


def test_a_deleted_binary_is_still_hashed_through_proc(tmp_path):
    dropper = tmp_path / "dropper"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", dropper)
    digest = hashlib.sha256(dropper.read_bytes()).hexdigest()
    process = subprocess.Popen([str(dropper), "30"])
    try:
        time.sleep(0.1)
        dropper.unlink()
        found, _ = ExecutableTracker(state_path=None, max_hashes=8, max_file_bytes=2**30).observe(
            [process.pid]
        )
    finally:
        process.kill()
        process.wait()
    assert found[0].sha256 == digest and found[0].path.endswith("(deleted)")


def test_auth_failures_are_counted_from_the_log_since_the_last_read(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("Jan 1 sshd[1]: Failed password for root from 10.0.0.9 port 1 ssh2\n")
    counter = AuthFailureCounter((tmp_path / "missing.log", log))
    assert counter.read() == (0, str(log))  # history is not news
    with log.open("a") as handle:
        handle.write("Jan 1 sshd[1]: Failed password for admin from 10.0.0.9 port 2 ssh2\n")
        handle.write("Jan 1 sshd[1]: Accepted publickey for ops from 10.0.0.2 port 3 ssh2\n")
        handle.write("Jan 1 login[2]: FAILED LOGIN (1) on '/dev/tty1' FOR 'root'\n")
        handle.write("Jan 1 sshd[1]: Invalid user ubnt from 10.0.0.9 port 4")  # no newline yet
    assert counter.read() == (2, str(log))
    with log.open("a") as handle:
        handle.write("\n")
    assert counter.read() == (1, str(log))
    log.rename(tmp_path / "auth.log.1")  # rotation: a new file is read from its start
    log.write_text("Jan 2 sshd[1]: pam_unix(sshd:auth): authentication failure; rhost=10.0.0.9\n")
    assert counter.read() == (1, str(log))
    assert AuthFailureCounter((tmp_path / "none",)).read() == (None, None)


def test_a_full_report_from_this_machine(config):
    collector = TelemetryCollector(config, agent_version="9.9.9")
    report = collector.collect(seq=42, reports_dropped=3)
    assert report.seq == 42 and report.reports_dropped == 3 and report.agent_version == "9.9.9"
    assert report.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert report.boot_id == boot_id()
    assert report.uptime_s > 0 and report.process_count > 1
    assert report.memory_total_bytes > report.memory_available_bytes > 0
    assert report.disks and report.disks[0].total_bytes > 0
    assert report.net is not None and report.auth_failures == 0
    assert report.period_start_ms <= report.collected_at_ms
    later = collector.collect(seq=43)
    assert later.period_start_ms == report.collected_at_ms
    for content_type in ContentType:
        data = encode_within_limit(report, content_type)
        assert decode_message(data, content_type) == report
    beat = collector.heartbeat(last_report_seq=43, buffered_reports=1, reports_dropped=0)
    assert beat.boot_id == report.boot_id


def test_an_oversized_report_is_trimmed_and_the_cut_counted(config):
    report = TelemetryCollector(config).collect(seq=1)
    many = [
        Connection(
            proto=TransportProto.TCP, local_address="10.0.0.1", local_port=40000 + i % 20000,
            remote_address=f"2001:db8::{i:x}", remote_port=443, pid=1, process="p" * 100,
        )
        for i in range(1024)
    ]
    big = report.model_copy(update={"connections": many})
    data = encode_within_limit(big, ContentType.JSON)
    assert len(data) <= MAX_MESSAGE_BYTES
    trimmed = decode_message(data, ContentType.JSON)
    assert isinstance(trimmed, TelemetryReport)
    assert len(trimmed.connections) + trimmed.connections_omitted == 1024 + report.connections_omitted
    assert len(trimmed.connections) > 0
