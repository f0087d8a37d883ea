"""Between two reports the agent sees short-lived activity on this machine (real /proc,
real sockets on 127.0.0.1, real child processes)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fleetguard.agent import ActivitySampler, AgentConfig, TelemetryCollector
from fleetguard.agent._proctables import read_sockets
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ConfigurationError
from fleetguard.protocol import (
    MAX_LISTENERS_OPENED,
    MAX_NEW_EXECUTABLES,
    ProcessUsage,
    TelemetryReport,
    TransportProto,
    to_millis,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _now_ms() -> int:
    return to_millis(utcnow())


@pytest.fixture
def collector(tmp_path: Path) -> TelemetryCollector:
    (tmp_path / "auth.log").write_text("")
    # Every binary running now is new to a fresh agent: hash them all in its first report.
    return TelemetryCollector(AgentConfig(state_dir=tmp_path / "state", interval_s=60,
                                          hash_max_files=MAX_NEW_EXECUTABLES,
                                          auth_logs=(tmp_path / "auth.log",)))


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def _brief_connection(server: socket.socket, open_s: float = 0.2) -> int:
    """Connect to ``server`` for ``open_s`` and close (this side first); the local port."""
    with socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        time.sleep(open_s)
        local_port = int(client.getsockname()[1])
    accepted.close()
    return local_port


def _port(server: socket.socket) -> int:
    return int(server.getsockname()[1])


def _seen(report: TelemetryReport, port: int) -> list[tuple[str, int, int]]:
    return [(d.address, d.samples, d.connections) for d in report.destinations_seen or ()
            if d.port == port]


def test_a_200_ms_connection_between_two_reports_is_in_the_second_report(
    collector: TelemetryCollector, server: socket.socket,
) -> None:
    before = collector.collect(seq=0)
    _brief_connection(server)
    collector.sample()  # the sampler's next tick, after the connection closed
    after = collector.collect(seq=1)
    assert _seen(before, _port(server)) == []
    assert [address for address, _, _ in _seen(after, _port(server))] == ["127.0.0.1"]
    assert all(c.remote_port != _port(server) for c in after.connections)  # not at the instant


def test_the_agent_sampling_every_second_sees_a_200_ms_beacon_every_time(
    collector: TelemetryCollector, server: socket.socket,
) -> None:
    stop = threading.Event()

    def sample_every_second() -> None:
        while not stop.wait(1.0):
            collector.sample()

    sampler = threading.Thread(target=sample_every_second)
    sampler.start()
    try:
        collector.collect(seq=0)
        for _ in range(3):
            _brief_connection(server)
            time.sleep(0.8)
        report = collector.collect(seq=1)
    finally:
        stop.set()
        sampler.join()
    ((_, samples, connections),) = _seen(report, _port(server))
    assert connections == 3  # each one counted, though none was open at the report
    assert samples >= 1
    assert report.samples is not None and report.samples >= 2


def test_a_connection_seen_open_by_a_sample_counts_though_the_peer_closed_it(
    collector: TelemetryCollector, server: socket.socket,
) -> None:
    collector.collect(seq=0)
    with socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        collector.sample()
        accepted.close()  # the peer ends it: no TIME_WAIT on this side
        client.recv(1)
    report = collector.collect(seq=1)
    assert [address for address, _, _ in _seen(report, _port(server))] == ["127.0.0.1"]


def test_a_client_connecting_in_is_not_a_destination_of_this_device(
    collector: TelemetryCollector, server: socket.socket,
) -> None:
    collector.collect(seq=0)
    client_port = _brief_connection(server)
    report = collector.collect(seq=1)
    assert _seen(report, client_port) == []  # the accepted side's peer is the client's port


def test_a_listener_opened_and_closed_between_two_reports_is_in_the_second_report(
    collector: TelemetryCollector,
) -> None:
    collector.collect(seq=0)
    with socket.create_server(("127.0.0.1", 0)) as brief:
        port = _port(brief)
        collector.sample()
    report = collector.collect(seq=1)
    opened = [x for x in report.listeners_opened or () if x.port == port]
    assert [(x.proto, x.address, x.closed) for x in opened] == [
        (TransportProto.TCP, "127.0.0.1", True)]
    assert all(s.port != port for s in report.listening)
    assert [x for x in collector.collect(seq=2).listeners_opened or () if x.port == port] == []


def test_a_listener_that_was_there_before_the_first_sample_was_not_opened(
    tmp_path: Path, server: socket.socket,
) -> None:
    collector = TelemetryCollector(AgentConfig(state_dir=tmp_path / "state", auth_logs=()))
    report = collector.collect(seq=0)
    assert all(x.port != _port(server) for x in report.listeners_opened or ())


def test_a_udp_client_socket_on_an_ephemeral_port_is_not_a_listener_opened(
    collector: TelemetryCollector,
) -> None:
    collector.collect(seq=0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"?", ("127.0.0.1", 9))  # binds an ephemeral port, as a resolver does
        port = int(client.getsockname()[1])
        collector.sample()
    report = collector.collect(seq=1)
    assert all(x.port != port for x in report.listeners_opened or ())


_BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def _process(report: TelemetryReport, pid: int) -> ProcessUsage:
    (usage,) = [p for p in report.processes or () if p.pid == pid]
    return usage


def test_a_busy_child_process_is_reported_with_its_own_cpu_time_over_the_period(
    collector: TelemetryCollector,
) -> None:
    collector.collect(seq=0)
    started_ms = _now_ms()
    child = subprocess.Popen([sys.executable, "-c", _BUSY.format(seconds=0.6)
                              + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        collector.sample()  # it is seen running
        while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.6:
            time.sleep(0.05)
        times = psutil.Process(child.pid).cpu_times()
        report = collector.collect(seq=1)
    finally:
        child.communicate(b"", timeout=10)
    usage = _process(report, child.pid)
    assert usage.cpu_seconds == pytest.approx(times.user + times.system, abs=0.05)
    assert usage.started_at_ms is not None and abs(usage.started_at_ms - started_ms) < 1_000
    assert usage.exe == os.path.realpath(sys.executable)
    assert not usage.exited


def test_a_process_that_ran_only_between_two_reports_is_in_the_second_exited(
    collector: TelemetryCollector,
) -> None:
    collector.collect(seq=0)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    collector.sample()
    child.communicate(b"", timeout=10)
    report = collector.collect(seq=1)
    assert _process(report, child.pid).exited
    assert all(p.pid != child.pid for p in collector.collect(seq=2).processes or ())


def test_a_long_running_process_is_charged_only_the_cpu_of_this_period(
    collector: TelemetryCollector,
) -> None:
    child = subprocess.Popen([sys.executable, "-c", _BUSY.format(seconds=0.5)
                              + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.5:
            time.sleep(0.05)
        collector.sample()
        collector.collect(seq=0)  # the busy half second is this period's
        time.sleep(0.2)
        report = collector.collect(seq=1)
    finally:
        child.communicate(b"", timeout=10)
    assert all(p.pid != child.pid for p in report.processes or ())  # idle since


def test_the_binary_of_a_process_that_ran_only_between_two_reports_is_reported_new(
    collector: TelemetryCollector, tmp_path: Path,
) -> None:
    dropper = tmp_path / "dropper"
    shutil.copy("/bin/sleep", dropper)
    collector.collect(seq=0)
    child = subprocess.Popen([str(dropper), "0.3"])
    collector.sample()
    child.wait(timeout=10)
    report = collector.collect(seq=1)
    (new,) = [e for e in report.new_executables if e.path == str(dropper)]
    assert new.sha256 == hashlib.sha256(dropper.read_bytes()).hexdigest()


def test_the_report_caps_the_listeners_opened_and_counts_the_rest(
    collector: TelemetryCollector,
) -> None:
    collector.collect(seq=0)
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(MAX_LISTENERS_OPENED + 6)]
    try:
        collector.sample()
    finally:
        for s in servers:
            s.close()
    report = collector.collect(seq=1)
    assert len(report.listeners_opened or ()) == MAX_LISTENERS_OPENED
    assert report.listeners_opened_omitted >= 6


def test_past_its_tracking_cap_the_sampler_only_counts_what_is_new(
    server: socket.socket,
) -> None:
    sampler = ActivitySampler(_now_ms, tracked_cap=4)
    sampler.sample()
    clients = [socket.create_connection(server.getsockname()) for _ in range(4)]
    remotes = [socket.create_server(("127.0.0.1", 0)) for _ in range(6)]
    clients += [socket.create_connection(r.getsockname()) for r in remotes]
    try:
        sampler.sample()
    finally:
        for s in clients + remotes:
            s.close()
    activity = sampler.harvest()
    assert len(activity.destinations_seen) <= 4
    assert activity.destinations_omitted >= 3  # 7 destinations, 4 kept
    assert len(activity.listeners_opened) <= 4 and activity.listeners_opened_omitted >= 2


def test_tcp_sockets_read_over_netlink_are_the_ones_proc_lists(
    server: socket.socket,
) -> None:
    with socket.create_connection(server.getsockname()):
        accepted, _ = server.accept()
        with accepted:
            over_netlink = {r for r in read_sockets() if r.proto is TransportProto.TCP}
            from_proc = {r for r in read_sockets(netlink=False) if r.proto is TransportProto.TCP}
    ours = {r for r in over_netlink if _port(server) in (r.local_port, r.remote_port)}
    assert len(ours) == 3  # the listener, and both ends of the connection
    assert ours <= from_proc


@pytest.mark.parametrize("value", [-1.0, 0.05, 61.0])
def test_a_sample_interval_outside_its_range_is_refused(tmp_path: Path, value: float) -> None:
    with pytest.raises(ConfigurationError, match="sample_interval_s"):
        AgentConfig(state_dir=tmp_path, interval_s=60, sample_interval_s=value)


def test_sampling_can_be_left_to_the_reports_alone(tmp_path: Path) -> None:
    assert AgentConfig(state_dir=tmp_path, sample_interval_s=0).sample_interval_s == 0


def _ended_by_the_peer(server: socket.socket) -> int:
    """A 200 ms connection the server ends: this side leaves no TIME_WAIT. Its local port."""
    with socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        time.sleep(0.2)
        accepted.close()
        client.recv(1)  # the peer's FIN
        local_port = int(client.getsockname()[1])
    return local_port


def test_a_connection_its_peer_ended_between_two_samples_is_told_by_the_kernel(
    server: socket.socket,
) -> None:
    sampler = ActivitySampler(_now_ms)
    if not sampler.sees_closed_sockets:
        pytest.skip("joining sock_diag's destroy groups needs root (CAP_NET_ADMIN)")
    try:
        sampler.sample()
        _ended_by_the_peer(server)
        assert all(r.remote_port != _port(server) for r in read_sockets())  # gone from the table
        activity = sampler.harvest()
    finally:
        sampler.close()
    assert [(d.address, d.connections) for d in activity.destinations_seen
            if d.port == _port(server)] == [("127.0.0.1", 1)]


def test_without_the_kernels_announcements_such_a_connection_is_missed(
    server: socket.socket,
) -> None:
    sampler = ActivitySampler(_now_ms, watch_closed=False)
    sampler.sample()
    _ended_by_the_peer(server)
    activity = sampler.harvest()
    assert all(d.port != _port(server) for d in activity.destinations_seen)


def test_a_shell_that_execs_another_program_is_reported_as_that_program(
    collector: TelemetryCollector, tmp_path: Path,
) -> None:
    miner = tmp_path / "kworkerd"
    shutil.copy("/bin/sleep", miner)
    collector.collect(seq=0)
    # The shell is sampled first, then replaces itself with the program (same pid).
    shell = subprocess.Popen(["/bin/sh", "-c", f"read line; exec {miner} 5"],
                             stdin=subprocess.PIPE)
    try:
        collector.sample()
        assert shell.stdin is not None
        shell.stdin.write(b"go\n")
        shell.stdin.flush()
        while psutil.Process(shell.pid).name() != "kworkerd":
            time.sleep(0.02)
        report = collector.collect(seq=1)
    finally:
        shell.kill()
        shell.wait()
    usage = _process(report, shell.pid)
    assert (usage.name, usage.exe) == ("kworkerd", str(miner))
    assert str(miner) in {e.path for e in report.new_executables}


def test_past_its_tracking_cap_new_processes_are_counted_once_each() -> None:
    sampler = ActivitySampler(_now_ms, tracked_cap=8, watch_closed=False)
    sampler.sample()  # tracks 8 of the machine's processes, the rest ran before: not news
    children = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE) for _ in range(3)]
    try:
        sampler.sample()
        sampler.sample()
    finally:
        for child in children:
            child.communicate(b"", timeout=10)
    activity = sampler.harvest()
    assert len(activity.processes) <= 8
    assert 3 <= activity.processes_omitted <= 3 + 8  # the 3 children once, not per sample


def test_a_program_that_ran_200_ms_between_two_samples_and_deleted_itself_is_reported(
    collector: TelemetryCollector, tmp_path: Path,
) -> None:
    if not collector.watches_executions:
        pytest.skip("watching executions (fanotify) needs root")
    dropper = tmp_path / "dropper"
    shutil.copy("/bin/sleep", dropper)
    collector.collect(seq=0)
    collector.sample()
    subprocess.run([str(dropper), "0.2"], check=True, timeout=10)  # between two samples
    dropper.unlink()
    report = collector.collect(seq=1)
    assert str(dropper) in {e.path for e in report.new_executables}
