"""What ran on the device between two reports: sampled often, reported once.

A report shows what is open at its instant; a beacon that connects for 200 ms every 5 s,
a listener opened for a few seconds or a short session falls between two reports. The
:class:`ActivitySampler` reads the kernel's socket and process tables every
``sample_interval_s`` (1 s by default) and accumulates over the report period:

- **destinations**: every outbound peer (address, port) that any sample showed, with in
  how many samples and over how many distinct connections. A socket counts from
  ESTABLISHED through its closing states and TIME_WAIT, in which the kernel keeps a
  connection the device closed for about a minute: a 200 ms connection that the device
  ends is in the next sample even at a 1 s interval. One that its peer ended leaves no
  TIME_WAIT; the kernel's announcements of the sockets it frees
  (:class:`~fleetguard.agent._proctables.ClosedSockets`, where the agent may join them:
  root, or CAP_NET_ADMIN) tell the sampler of it at its next sample. A connection whose
  local port is listening came in, and is not a destination.
- **listeners opened**: sockets that began listening during the period, also those
  closed again before the report. An unconnected UDP socket on a port of the kernel's
  ephemeral range is a client's (a resolver, an NTP query), not a service, and is left out.
- **processes**: every process that used CPU or started during the period, with its own
  CPU time over it (user + system of all its threads, from ``/proc/<pid>/stat``): on a
  container or a namespaced device the machine-wide counters include the neighbours'.
  A process that execs another program (a shell into a miner) is reported under the
  program it runs at the last sample that saw it, which is handed to the executable
  tracker; a process that starts and exits between two samples is not seen.

Bounds: at most :data:`TRACKED_CAP` destinations, listeners and processes each are held
between reports (past it, what is new is only counted), and a report carries the
protocol's caps (``MAX_DESTINATIONS_SEEN``, ``MAX_LISTENERS_OPENED``, ``MAX_PROCESSES``),
the rest counted in the ``*_omitted`` fields. The sampler's own cost is measured by
``benchmarks/bench_agent_sampling.py``.

Not thread-safe: the collector serialises :meth:`ActivitySampler.sample` and
:meth:`ActivitySampler.harvest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fleetguard.agent import _proctables
from fleetguard.agent._proctables import ClosedSockets, ProcessRow, SocketRow, is_loopback
from fleetguard.protocol import (
    MAX_DESTINATIONS_SEEN,
    MAX_LISTENERS_OPENED,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_PROCESSES,
    DestinationSeen,
    ListenerOpened,
    ProcessUsage,
    TransportProto,
)

TRACKED_CAP = 4096  # per kind, between two reports

_Key = tuple[TransportProto, str, int]  # proto, address, port
_ConnectionKey = tuple[TransportProto, str, int, str, int]


@dataclass(slots=True)
class _Destination:
    samples: int = 0
    connections: int = 0


@dataclass(slots=True)
class _Opened:
    opened_at_ms: int
    closed: bool = False


@dataclass(slots=True)
class _Process:
    pid: int
    name: str
    exe: str | None
    base_ticks: int  # CPU ticks at the start of the period (0 if it started in it)
    last_ticks: int
    started_at_ms: int | None
    running: bool = True


@dataclass(frozen=True, slots=True)
class PeriodActivity:
    """What a report carries of one period (the wire's accumulated fields)."""

    samples: int
    destinations_seen: list[DestinationSeen]
    destinations_omitted: int
    listeners_opened: list[ListenerOpened]
    listeners_opened_omitted: int
    processes: list[ProcessUsage]
    processes_omitted: int


@dataclass(slots=True)
class _Period:
    samples: int = 0
    destinations: dict[_Key, _Destination] = field(default_factory=dict)
    destinations_overflow: int = 0
    opened: dict[_Key, _Opened] = field(default_factory=dict)
    opened_overflow: int = 0
    processes_overflow: int = 0


class ActivitySampler:
    """Accumulates sockets and processes over a report period; see the module doc."""

    def __init__(
        self,
        clock_ms: Callable[[], int],
        *,
        proc: Path = _proctables.PROC,
        on_new_process: Callable[[int], None] | None = None,
        tracked_cap: int = TRACKED_CAP,
        watch_closed: bool = True,
    ) -> None:
        self._clock_ms = clock_ms
        self._proc = proc
        self._on_new_process = on_new_process
        self._cap = tracked_cap
        self._ephemeral = _proctables.ephemeral_ports(proc)
        self._period = _Period()
        self._listeners: set[_Key] | None = None  # at the last sample; None before the first
        self._period_listeners: set[_Key] = set()  # at the start of the period
        self._connections: set[_ConnectionKey] = set()  # at the last sample
        self._processes: dict[tuple[int, int], _Process] = {}  # (pid, start ticks)
        self._last_uptime_ticks: int | None = None
        self._closed: ClosedSockets | None = None
        if watch_closed and proc == _proctables.PROC:
            try:
                self._closed = ClosedSockets()
            except OSError:  # not root, or an old kernel: the samples alone
                self._closed = None

    @property
    def sees_closed_sockets(self) -> bool:
        """Whether sockets closed between two samples are told (see the module doc)."""
        return self._closed is not None

    def close(self) -> None:
        if self._closed is not None:
            self._closed.close()
            self._closed = None

    def sample(self) -> None:
        """Read the socket and process tables once and add them to the period."""
        now_ms = self._clock_ms()
        closed: list[SocketRow] = []
        if self._closed is not None:  # before the table: a socket is in one or the other
            closed, lost = self._closed.drain()
            self._period.destinations_overflow += lost
        self._sample_sockets(_proctables.read_sockets(self._proc), closed, now_ms)
        # Uptime before the table: a process missing from it started after this reading.
        uptime = _proctables.uptime_ticks(self._proc)
        self._sample_processes(_proctables.read_processes(self._proc), uptime, now_ms)
        self._period.samples += 1

    def harvest(self) -> PeriodActivity:
        """Take a last sample, return the period's activity and start the next period."""
        self.sample()
        period = self._period
        destinations, omitted = self._destinations_seen(period)
        opened = [ListenerOpened(proto=k[0], address=k[1], port=k[2],
                                 opened_at_ms=v.opened_at_ms, closed=v.closed)
                  for k, v in sorted(period.opened.items(), key=lambda kv: kv[0][2])]
        processes, processes_omitted = self._process_usage(period)
        activity = PeriodActivity(
            samples=period.samples,
            destinations_seen=destinations, destinations_omitted=omitted,
            listeners_opened=opened[:MAX_LISTENERS_OPENED],
            listeners_opened_omitted=max(len(opened) - MAX_LISTENERS_OPENED, 0)
            + period.opened_overflow,
            processes=processes, processes_omitted=processes_omitted,
        )
        self._period = _Period()
        self._period_listeners = set(self._listeners or ())
        self._processes = {key: _Process(p.pid, p.name, p.exe, p.last_ticks, p.last_ticks, None)
                           for key, p in self._processes.items() if p.running}
        return activity

    # -- sockets ------------------------------------------------------------------------

    def _sample_sockets(self, rows: list[SocketRow], closed: list[SocketRow],
                        now_ms: int) -> None:
        listeners = {(r.proto, r.local_address, r.local_port) for r in rows
                     if r.listening and self._is_service(r)}
        listening_ports = {(r.proto, r.local_port) for r in rows if r.listening}
        if self._listeners is None:  # the first sample: what listens already is no news
            self._period_listeners = set(listeners)
        self._note_opened(listeners, now_ms)
        self._listeners = listeners
        connections: set[_ConnectionKey] = set()
        seen: set[_Key] = set()
        period = self._period
        for row in rows + [r for r in closed if r.remote_port != 0]:
            if not row.has_peer or (row.proto, row.local_port) in listening_ports:
                continue  # no peer, or it came in to a service of this device
            if row.proto is TransportProto.TCP and row.state == _proctables.TCP_SYN_RECV:
                continue
            key = (row.proto, row.remote_address, row.remote_port)
            connection = (row.proto, row.local_address, row.local_port, row.remote_address,
                          row.remote_port)
            if connection in connections:
                continue  # told closed, and in TIME_WAIT in the table: one connection
            connections.add(connection)
            destination = period.destinations.get(key)
            if destination is None:
                if len(period.destinations) >= self._cap:
                    period.destinations_overflow += connection not in self._connections
                    continue
                destination = period.destinations[key] = _Destination()
            if connection not in self._connections:
                destination.connections += 1
            seen.add(key)
        for key in seen:
            period.destinations[key].samples += 1
        self._connections = connections

    def _is_service(self, row: SocketRow) -> bool:
        low, high = self._ephemeral
        return row.proto is TransportProto.TCP or not low <= row.local_port <= high

    def _note_opened(self, listeners: set[_Key], now_ms: int) -> None:
        period = self._period
        for key in listeners - self._period_listeners:
            opened = period.opened.get(key)
            if opened is not None:
                opened.closed = False
            elif len(period.opened) < self._cap:
                period.opened[key] = _Opened(now_ms)
            elif key not in (self._listeners or ()):
                period.opened_overflow += 1
        for key, opened in period.opened.items():
            if key not in listeners:
                opened.closed = True

    def _destinations_seen(self, period: _Period) -> tuple[list[DestinationSeen], int]:
        # Remote peers first: if the list must be cut, loopback chatter goes before them.
        ordered = sorted(period.destinations.items(),
                         key=lambda kv: (is_loopback(kv[0][1]), kv[0][1], kv[0][2], kv[0][0]))
        listed = [DestinationSeen(proto=k[0], address=k[1], port=k[2], samples=v.samples,
                                  connections=v.connections)
                  for k, v in ordered[:MAX_DESTINATIONS_SEEN]]
        omitted = max(len(ordered) - MAX_DESTINATIONS_SEEN, 0) + period.destinations_overflow
        return listed, omitted

    # -- processes ----------------------------------------------------------------------

    def _sample_processes(self, rows: list[ProcessRow], uptime: int | None, now_ms: int) -> None:
        previous_uptime, self._last_uptime_ticks = self._last_uptime_ticks, uptime
        boot_ms = None if uptime is None else now_ms - uptime * 1000 // _proctables.CLOCK_TICKS
        running: set[tuple[int, int]] = set()
        for row in rows:
            key = (row.pid, row.start_ticks)
            running.add(key)
            known = self._processes.get(key)
            if known is not None:
                known.last_ticks = row.cpu_ticks
                if row.name[:MAX_NAME_CHARS] != known.name:  # it exec'd another program
                    self._exec(known, row)
                continue
            # Started since the last sample: all its CPU is this period's. Running before
            # the first sample: only what it uses from now on.
            # ">=": a tick is 10 ms; one that started in the tick of the last reading did so
            # after it (the table is read after the uptime), or it would be known
            started = previous_uptime is not None and row.start_ticks >= previous_uptime
            if len(self._processes) >= self._cap:
                self._period.processes_overflow += started  # counted once, as it appears
                continue
            started_ms = None
            if started and boot_ms is not None:
                started_ms = max(boot_ms + row.start_ticks * 1000 // _proctables.CLOCK_TICKS, 0)
            self._processes[key] = _Process(
                row.pid, row.name[:MAX_NAME_CHARS], _exe(row.pid, self._proc),
                0 if started else row.cpu_ticks, row.cpu_ticks, started_ms)
            if started and self._on_new_process is not None:
                self._on_new_process(row.pid)
        for key, process in self._processes.items():
            if key not in running:
                process.running = False

    def _exec(self, process: _Process, row: ProcessRow) -> None:
        """The process now runs another binary: reported under it, and the binary looked at."""
        process.name = row.name[:MAX_NAME_CHARS]
        process.exe = _exe(row.pid, self._proc)
        if self._on_new_process is not None:
            self._on_new_process(row.pid)

    def _process_usage(self, period: _Period) -> tuple[list[ProcessUsage], int]:
        ran = [p for p in self._processes.values()
               if p.last_ticks > p.base_ticks or p.started_at_ms is not None]
        ran.sort(key=lambda p: (-(p.last_ticks - p.base_ticks), p.pid))
        listed = [
            ProcessUsage(pid=p.pid, name=p.name, exe=p.exe,
                         cpu_seconds=(p.last_ticks - p.base_ticks) / _proctables.CLOCK_TICKS,
                         started_at_ms=p.started_at_ms, exited=not p.running)
            for p in ran[:MAX_PROCESSES]
        ]
        return listed, max(len(ran) - MAX_PROCESSES, 0) + period.processes_overflow


def _exe(pid: int, proc: Path) -> str | None:
    path = _proctables.read_exe(pid, proc)
    return path[:MAX_PATH_CHARS] if path else None


def cpu_seconds_of(work: Callable[[], object]) -> float:
    """Run ``work``; the CPU seconds this thread spent on it. CPU, not wall time, is what a
    budget holds: a busy device (an attacker's load included) must not slow sampling down."""
    start = time.thread_time()
    work()
    return time.thread_time() - start
