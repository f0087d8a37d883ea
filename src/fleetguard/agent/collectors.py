"""Gathers one telemetry report from /proc and psutil.

What is collected follows device-side monitors (AWS IoT Device Defender's device
metrics, osquery's process/socket tables) and what IoT anomaly detectors learn from
(Kitsune/N-BaIoT-style per-host traffic and connection counts):

- listening TCP and bound UDP sockets, with the owning process when known;
- established connections, remote address and port, owning process;
- bytes, packets, errors and drops per interface; kernel TCP/UDP counters, including
  outbound connection attempts (``Tcp.ActiveOpens``) and failed ones;
- authentication failure events from the auth log, since the previous report;
- the process count and executables first seen running (path, sha256);
- CPU, load, memory, swap, disk per mount, uptime and boot id;
- what the :class:`~fleetguard.agent.sampler.ActivitySampler` accumulated between reports
  (:meth:`TelemetryCollector.sample`, every ``sample_interval_s``): outbound destinations,
  listeners opened, and the processes that ran with their own CPU time; programs executed
  in between are told by the kernel (:mod:`fleetguard.agent._exec_watch`, as root).

A metric that cannot be read is left out, never fatal: the report still goes out.
Lists are bounded by the protocol's limits; what does not fit is counted in the
``*_omitted`` fields. :func:`encode_within_limit` trims a report until it fits one
message.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import psutil

import fleetguard
from fleetguard.agent import _procfs
from fleetguard.agent._exec_watch import ExecWatch
from fleetguard.agent._executables import ExecutableTracker
from fleetguard.agent._proctables import is_loopback
from fleetguard.agent.config import AgentConfig
from fleetguard.agent.sampler import ActivitySampler
from fleetguard.core.clock import utcnow
from fleetguard.protocol import (
    MAX_CONNECTIONS,
    MAX_DISKS,
    MAX_INTERFACES,
    MAX_LISTENING,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    Connection,
    ContentType,
    DiskUsage,
    Heartbeat,
    InterfaceCounters,
    ListeningSocket,
    MessageEncodeError,
    NetworkCounters,
    TelemetryReport,
    TransportProto,
    encode_message,
    to_millis,
)

logger = logging.getLogger(__name__)

_AUTH_FAILURE = re.compile(
    rb"Failed password|authentication failure|FAILED LOGIN|Invalid user|"
    rb"Failed keyboard-interactive|maximum authentication attempts exceeded"
)
_AUTH_READ_LIMIT = 4 * 1024 * 1024
_ADDRESS = re.compile(r"^[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9_.-]{1,15})?$")


@dataclass(frozen=True, slots=True)
class SocketSnapshot:
    listening: list[ListeningSocket]
    listening_omitted: int
    connections: list[Connection]
    connections_omitted: int


def collect_sockets() -> SocketSnapshot:
    """Listening sockets and established connections, with process names when readable."""
    names: dict[int, str | None] = {}

    def process_name(pid: int | None) -> str | None:
        if pid is None:
            return None
        if pid not in names:
            try:
                names[pid] = psutil.Process(pid).name()[:MAX_NAME_CHARS] or None
            except (psutil.Error, OSError):
                names[pid] = None
        return names[pid]

    try:
        entries = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError) as exc:
        logger.warning("cannot list sockets: %s", exc)
        return SocketSnapshot([], 0, [], 0)
    listening: dict[tuple[str, str, int, int | None], ListeningSocket] = {}
    connections: list[Connection] = []
    for entry in entries:
        proto = TransportProto.TCP if entry.type == socket.SOCK_STREAM else TransportProto.UDP
        if not entry.laddr or not _ADDRESS.match(entry.laddr.ip):
            continue
        local_ip, local_port = entry.laddr.ip, entry.laddr.port
        remote = entry.raddr
        if (proto is TransportProto.TCP and entry.status == psutil.CONN_LISTEN) or (
            proto is TransportProto.UDP and not remote
        ):
            key = (proto.value, local_ip, local_port, entry.pid)
            listening[key] = ListeningSocket(
                proto=proto, address=local_ip, port=local_port, pid=entry.pid,
                process=process_name(entry.pid),
            )
        elif remote and _ADDRESS.match(remote.ip) and (
            proto is TransportProto.UDP or entry.status == psutil.CONN_ESTABLISHED
        ):
            connections.append(
                Connection(
                    proto=proto, local_address=local_ip, local_port=local_port,
                    remote_address=remote.ip, remote_port=remote.port, pid=entry.pid,
                    process=process_name(entry.pid),
                )
            )
    ports = sorted(listening.values(), key=lambda s: (s.port, s.proto, s.address))
    # Remote peers first: if the list must be cut, loopback chatter goes before them.
    connections.sort(
        key=lambda c: (is_loopback(c.remote_address), c.remote_address, c.remote_port)
    )
    return SocketSnapshot(
        ports[:MAX_LISTENING], max(len(ports) - MAX_LISTENING, 0),
        connections[:MAX_CONNECTIONS], max(len(connections) - MAX_CONNECTIONS, 0),
    )


def collect_interfaces() -> list[InterfaceCounters]:
    """Per-interface counters, cumulative since boot, sorted by name."""
    try:
        counters = psutil.net_io_counters(pernic=True)
    except (psutil.Error, OSError):
        return []
    return [
        InterfaceCounters(
            name=name[:32], bytes_in=c.bytes_recv, bytes_out=c.bytes_sent,
            packets_in=c.packets_recv, packets_out=c.packets_sent, errors_in=c.errin,
            errors_out=c.errout, drops_in=c.dropin, drops_out=c.dropout,
        )
        for name, c in sorted(counters.items())[:MAX_INTERFACES]
        if name
    ]


def collect_network_counters(proc: Path = _procfs.PROC) -> NetworkCounters | None:
    snmp = _procfs.read_snmp(proc)
    if "Tcp.ActiveOpens" not in snmp:
        return None

    def udp(name: str) -> int:
        return snmp.get(f"Udp.{name}", 0) + snmp.get(f"Udp6{name}", 0)

    return NetworkCounters(
        tcp_active_opens=snmp["Tcp.ActiveOpens"],
        tcp_passive_opens=snmp.get("Tcp.PassiveOpens", 0),
        tcp_attempt_fails=snmp.get("Tcp.AttemptFails", 0),
        tcp_estab_resets=snmp.get("Tcp.EstabResets", 0),
        tcp_out_resets=snmp.get("Tcp.OutRsts", 0),
        tcp_retrans_segs=snmp.get("Tcp.RetransSegs", 0),
        tcp_in_errors=snmp.get("Tcp.InErrs", 0),
        udp_in_datagrams=udp("InDatagrams"),
        udp_out_datagrams=udp("OutDatagrams"),
        udp_no_ports=udp("NoPorts"),
        udp_in_errors=udp("InErrors"),
    )


def collect_disks() -> list[DiskUsage]:
    disks: list[DiskUsage] = []
    seen: set[str] = set()
    try:
        partitions = psutil.disk_partitions(all=False)
    except (psutil.Error, OSError):
        partitions = []
    mounts: list[str] = []
    for partition in partitions:
        if partition.device not in seen:
            seen.add(partition.device)
            mounts.append(partition.mountpoint)
    for mount in mounts or ["/"]:
        if len(disks) >= MAX_DISKS:
            break
        try:
            usage = psutil.disk_usage(mount)
        except (psutil.Error, OSError):
            continue
        disks.append(
            DiskUsage(
                mount=mount[:MAX_PATH_CHARS], total_bytes=usage.total, used_bytes=usage.used,
                free_bytes=usage.free,
            )
        )
    return disks


class AuthFailureCounter:
    """Counts authentication failure events appended to an auth log since the last call.

    The first call only finds the end of the file (history is not news). A rotated or
    truncated file is read from its start. At most 4 MiB is read per call.
    """

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self._paths = paths
        self._source: Path | None = None
        self._inode: int | None = None
        self._offset = 0

    def read(self) -> tuple[int | None, str | None]:
        """(failures since the last call, the file read), or (None, None) if none is readable."""
        for path in self._paths:
            try:
                with open(path, "rb") as handle:
                    return self._count(path, handle), str(path)[:MAX_NAME_CHARS]
            except OSError:
                continue
        self._source = None
        return None, None

    def _count(self, path: Path, handle: IO[bytes]) -> int:
        info = os.fstat(handle.fileno())
        if self._source != path or self._inode is None:
            first = self._source is None and self._inode is None
            self._source, self._inode = path, info.st_ino
            self._offset = info.st_size if first else 0
            if first:
                return 0
        elif info.st_ino != self._inode or info.st_size < self._offset:
            self._inode, self._offset = info.st_ino, 0
        handle.seek(self._offset)
        data = handle.read(_AUTH_READ_LIMIT)
        end = data.rfind(b"\n") + 1  # only whole lines; a partial one waits
        self._offset += end
        return sum(1 for line in data[:end].splitlines() if _AUTH_FAILURE.search(line))


class TelemetryCollector:
    """Builds reports and heartbeats from this machine; one instance per agent process."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        agent_version: str = fleetguard.__version__,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._version = agent_version
        self._clock = clock
        self._executables = ExecutableTracker(
            state_path=config.known_executables_path,
            max_hashes=config.hash_max_files,
            max_file_bytes=config.hash_max_file_bytes,
        )
        self._auth = AuthFailureCounter(config.auth_logs)
        self._auth.read()  # find the end of the log now, so the first report counts from here
        psutil.cpu_percent(interval=None)  # the first reading is meaningless; take it now
        self._boot_id = boot_id()
        self._period_start_ms = to_millis(clock())
        # sample() runs in one worker thread, collect() in another: one at a time.
        self._lock = threading.Lock()
        self._sampler = ActivitySampler(lambda: to_millis(self._clock()),
                                        on_new_process=self._executables.notice)
        self._sampler.sample()  # what runs now is the first period's starting point
        try:  # programs that start and exit between two samples (root only)
            self._exec_watch: ExecWatch | None = ExecWatch()
        except (OSError, AttributeError):
            self._exec_watch = None

    @property
    def watches_executions(self) -> bool:
        """Whether programs that run between two samples are told (root, Linux 5.0+)."""
        return self._exec_watch is not None

    def sample(self) -> None:
        """Add what runs now to the period's activity (between reports)."""
        with self._lock:
            self._sampler.sample()
            self._note_executed()

    def _note_executed(self) -> None:
        if self._exec_watch is None:
            return
        executed, _ = self._exec_watch.drain()
        for program in executed:
            self._executables.notice_file(program.pid, program.path, program.key,
                                          program.size)

    def collect(self, *, seq: int, reports_dropped: int = 0) -> TelemetryReport:
        with self._lock:
            return self._collect(seq=seq, reports_dropped=reports_dropped)

    def _collect(self, *, seq: int, reports_dropped: int) -> TelemetryReport:
        now_ms = to_millis(self._clock())
        activity = self._sampler.harvest()
        self._note_executed()
        sockets = collect_sockets()
        pids = psutil.pids()
        new_executables, pending = self._executables.observe(pids)
        failures, source = self._auth.read()
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        load = os.getloadavg()
        report = TelemetryReport(
            seq=seq,
            collected_at_ms=now_ms,
            period_start_ms=min(self._period_start_ms, now_ms),
            agent_version=self._version,
            boot_id=self._boot_id,
            uptime_s=uptime_seconds(),
            cpu_percent=min(max(psutil.cpu_percent(interval=None), 0.0), 100.0),
            load_1=load[0],
            load_5=load[1],
            load_15=load[2],
            memory_total_bytes=memory.total,
            memory_available_bytes=memory.available,
            swap_total_bytes=swap.total,
            swap_used_bytes=swap.used,
            process_count=len(pids),
            disks=collect_disks(),
            interfaces=collect_interfaces(),
            net=collect_network_counters(),
            listening=sockets.listening,
            listening_omitted=sockets.listening_omitted,
            connections=sockets.connections,
            connections_omitted=sockets.connections_omitted,
            new_executables=new_executables,
            new_executables_pending=pending,
            auth_failures=failures,
            auth_source=source,
            reports_dropped=reports_dropped,
            samples=activity.samples,
            destinations_seen=activity.destinations_seen,
            destinations_omitted=activity.destinations_omitted,
            listeners_opened=activity.listeners_opened,
            listeners_opened_omitted=activity.listeners_opened_omitted,
            processes=activity.processes,
            processes_omitted=activity.processes_omitted,
        )
        self._period_start_ms = now_ms
        return report

    def heartbeat(
        self, *, last_report_seq: int | None, buffered_reports: int, reports_dropped: int
    ) -> Heartbeat:
        return Heartbeat(
            sent_at_ms=to_millis(self._clock()),
            boot_id=self._boot_id,
            uptime_s=uptime_seconds(),
            agent_version=self._version,
            last_report_seq=last_report_seq,
            buffered_reports=buffered_reports,
            reports_dropped=reports_dropped,
        )


def boot_id() -> str:
    """The kernel's boot id; on systems without one, a stable stand-in from the boot time."""
    return _procfs.read_boot_id() or str(uuid.uuid5(uuid.NAMESPACE_OID, str(psutil.boot_time())))


def uptime_seconds() -> float:
    value = _procfs.read_uptime()
    if value is None:
        value = max(time.time() - psutil.boot_time(), 0.0)
    return value


def encode_within_limit(report: TelemetryReport, content_type: ContentType) -> bytes:
    """Encode a report, halving its longest lists (and counting the cut) until it fits."""
    while True:
        try:
            return encode_message(report, content_type)
        except MessageEncodeError:
            report = _halve_largest(report)


_OMITTED = {  # each list a report may cut, and the field that counts what was cut
    "connections": "connections_omitted",
    "listening": "listening_omitted",
    "new_executables": "new_executables_pending",
    "destinations_seen": "destinations_omitted",
    "listeners_opened": "listeners_opened_omitted",
    "processes": "processes_omitted",
}


def _halve_largest(report: TelemetryReport) -> TelemetryReport:
    sizes = {name: len(getattr(report, name) or ()) for name in _OMITTED}
    field = max(sizes, key=lambda name: sizes[name])
    if sizes[field] == 0:
        raise MessageEncodeError("the report does not fit one message even without its lists")
    keep = sizes[field] // 2
    counted = _OMITTED[field]
    return report.model_copy(update={
        field: getattr(report, field)[:keep],
        counted: getattr(report, counted) + sizes[field] - keep,
    })
