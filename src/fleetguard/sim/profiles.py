"""Behaviour profiles of virtual devices and the compromise scenarios injected into them.

Each virtual device keeps cumulative counters (interface bytes and packets, kernel TCP
and UDP counters) that grow at its profile's rates with some noise, so the platform's
differences between reports look like a real device's. A scenario changes those rates
and the socket lists the way the attack would on a real device (rates after the attack
literature, see ``research/detect_scan.md``: Mirai scans at about 160 SYN/s per bot and
brute-forces telnet with a small dictionary; N-BaIoT/Kitsune evaluate on such scans,
floods and C2 traffic).

Each report also carries what the real agent accumulates by sampling sockets and
processes every second between reports: every outbound destination it saw over the period
(``destinations_seen``), listeners opened during it (``listeners_opened``) and the processes
that ran with their own CPU time (``processes``). A connection the device closes stays in
TIME_WAIT for 60 s, so the agent's samples see it for that long even if it was open for
200 ms; what is open at the report's instant (``connections``) is only ESTABLISHED.

Profiles:

- ``camera``: steady upstream video, about 2 Mbit/s, to one destination; RTSP and HTTP
  listening.
- ``sensor``: a few small messages; one connection to the platform.
- ``gateway``: many local peers (MQTT in from 20-40 field devices, Modbus out), and a
  bridge upstream.

Scenarios (what the compromised device does):

- ``port_scan``: SYNs to random local addresses on telnet/ssh/http ports (~160/s), most
  refused: active opens and failed attempts climb, small packets out, RSTs in.
- ``telnet_bruteforce``: repeated telnet logins to a few peers (established sessions to
  port 23, a few new connections a second).
- ``exfiltration``: a new external destination receiving ~1.5 MB/s.
- ``c2_beacon``: a 200 ms connection to one external host every 60 s, the first as it
  starts; closed by the device, each is in TIME_WAIT (seen by the sampler) for 60 s.
- ``new_listener``: a bind shell listening on a new port, its executable newly seen.
- ``cryptominer``: CPU pinned near 100 %, a stratum connection, a new executable.
- ``flood``: a UDP flood at one target (~40,000 datagrams/s).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from fleetguard.protocol import (
    Connection,
    DestinationSeen,
    DiskUsage,
    InterfaceCounters,
    ListenerOpened,
    ListeningSocket,
    NetworkCounters,
    NewExecutable,
    ProcessUsage,
    TelemetryReport,
    TransportProto,
)

AGENT_VERSION = "sim-0.1.0"
TCP, UDP = TransportProto.TCP, TransportProto.UDP
ANY = "0.0.0.0"  # noqa: S104 - a reported socket address, nothing binds here
BIND_SHELL = "/tmp/.s/bd"  # noqa: S108 - a reported path, nothing is written
MINER = "/tmp/kdevtmpfsi"  # noqa: S108 - a reported path, nothing is written
SAMPLE_MS = 1_000  # the agent's default sample interval
TIME_WAIT_MS = 60_000  # how long Linux keeps a connection the device closed
BEACON_EVERY_MS = 60_000
BEACON_OPEN_MS = 200
MAIN_PROCESS_SHARE = 0.6  # of the device's CPU, used by its main program


class Profile(StrEnum):
    CAMERA = "camera"
    SENSOR = "sensor"
    GATEWAY = "gateway"


class Scenario(StrEnum):
    PORT_SCAN = "port_scan"
    TELNET_BRUTEFORCE = "telnet_bruteforce"
    EXFILTRATION = "exfiltration"
    C2_BEACON = "c2_beacon"
    NEW_LISTENER = "new_listener"
    CRYPTOMINER = "cryptominer"
    FLOOD = "flood"


@dataclass(frozen=True, slots=True)
class _Rates:
    bytes_out: float
    bytes_in: float
    packet_out: float  # bytes per packet
    packet_in: float
    cpu: tuple[float, float]
    processes: int
    memory_total: int
    listening: tuple[ListeningSocket, ...]


_PROFILES = {
    Profile.CAMERA: _Rates(
        250_000, 6_000, 1_200, 80, (15.0, 30.0), 45, 256 << 20,
        (ListeningSocket(proto=TCP, address=ANY, port=80, process="httpd"),
         ListeningSocket(proto=TCP, address=ANY, port=554, process="rtspd")),
    ),
    Profile.SENSOR: _Rates(
        40, 20, 120, 90, (0.5, 4.0), 18, 64 << 20,
        (ListeningSocket(proto=UDP, address=ANY, port=5353, process="mdnsd"),),
    ),
    Profile.GATEWAY: _Rates(
        20_000, 30_000, 300, 300, (6.0, 15.0), 80, 1 << 30,
        (ListeningSocket(proto=TCP, address=ANY, port=22, process="dropbear"),
         ListeningSocket(proto=TCP, address=ANY, port=1883, process="mosquitto"),
         ListeningSocket(proto=TCP, address=ANY, port=8080, process="lighttpd"),
         ListeningSocket(proto=UDP, address=ANY, port=5683, process="coapd")),
    ),
}
_NET_FIELDS = ("tcp_active_opens", "tcp_passive_opens", "tcp_attempt_fails",
               "tcp_estab_resets", "tcp_out_resets", "tcp_retrans_segs", "tcp_in_errors",
               "udp_in_datagrams", "udp_out_datagrams", "udp_no_ports", "udp_in_errors")


@dataclass(slots=True)
class ActiveScenario:
    scenario: Scenario
    start_ms: int
    end_ms: int
    target: str
    port: int
    announced: bool = False  # new executables are reported once

    def details(self) -> dict[str, object]:
        return {"target": self.target, "port": self.port}

    def beacons(self, since_ms: int, until_ms: int) -> tuple[int, int]:
        """(ms its beacons' sockets were visible in since..until, how many connections)."""
        first = max((since_ms - TIME_WAIT_MS - BEACON_OPEN_MS - self.start_ms)
                    // BEACON_EVERY_MS, 0)
        visible_ms = connections = 0
        at = self.start_ms + first * BEACON_EVERY_MS
        while at < min(until_ms, self.end_ms):
            overlap = min(until_ms, at + BEACON_OPEN_MS + TIME_WAIT_MS) - max(since_ms, at)
            if overlap > 0:
                visible_ms += overlap
                connections += 1
            at += BEACON_EVERY_MS
        return visible_ms, connections


@dataclass(slots=True)
class DeviceModel:
    """One virtual device's state; :meth:`report` advances it to ``now_ms``."""

    index: int
    profile: Profile
    rng: random.Random
    now_ms: int
    boot_id: str = ""
    boot_ms: int = 0
    address: str = ""
    upstream: tuple[str, int] = ("198.51.100.5", 8883)
    peers: list[str] = field(default_factory=list)
    eth: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    net: list[float] = field(default_factory=lambda: [0.0] * len(_NET_FIELDS))
    seq: int = 0
    last_ms: int = 0
    scenarios: list[ActiveScenario] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = self.rng
        self.boot_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.boot_ms = self.now_ms - rng.randrange(3_600_000, 30 * 86_400_000)
        subnet = self.index // 250
        self.address = f"10.{(subnet >> 8) & 255}.{subnet & 255}.{self.index % 250 + 2}"
        if self.profile is Profile.CAMERA:
            self.upstream = (f"203.0.113.{10 + self.index % 4}", 443)
        if self.profile is Profile.GATEWAY:
            base = self.address.rsplit(".", 1)[0]
            self.peers = [f"{base}.{n}" for n in rng.sample(range(2, 254), rng.randint(20, 40))]
        uptime_s = (self.now_ms - self.boot_ms) / 1000
        rates = _PROFILES[self.profile]
        self.eth = [rates.bytes_in * uptime_s, rates.bytes_out * uptime_s,
                    rates.bytes_in * uptime_s / rates.packet_in,
                    rates.bytes_out * uptime_s / rates.packet_out]
        self.net[0] = uptime_s / 300  # a reconnect every few minutes
        self.net[1] = uptime_s / 600
        self.last_ms = self.now_ms

    def add_scenario(self, active: ActiveScenario) -> None:
        self.scenarios.append(active)

    def report(self, now_ms: int) -> TelemetryReport:
        rng, rates = self.rng, _PROFILES[self.profile]
        dt = max((now_ms - self.last_ms) / 1000, 0.001)
        noise = rng.uniform(0.9, 1.1)
        out_b, in_b = rates.bytes_out * dt * noise, rates.bytes_in * dt * noise
        out_p, in_p = out_b / rates.packet_out, in_b / rates.packet_in
        net = [0.0] * len(_NET_FIELDS)
        net[0] = dt / 300
        net[1] = dt / 600 + (len(self.peers) * dt / 600 if self.peers else 0.0)
        net[7], net[8] = dt * 0.2, dt * 0.2
        cpu = rng.uniform(*rates.cpu)
        listening = list(rates.listening)
        connections = self._normal_connections()
        new_exes: list[NewExecutable] = []
        period = _Period(self.last_ms, now_ms, max(round(dt * 1000 / SAMPLE_MS), 1))
        own_cpu = cpu  # what the device's own programs use, before any attack
        for active in self.scenarios:
            if not active.start_ms <= now_ms < active.end_ms:
                continue
            span = min(dt, (now_ms - active.start_ms) / 1000)
            deltas = _apply(active, self, span, listening, connections, new_exes, period)
            out_b += deltas[0]
            in_b += deltas[1]
            out_p += deltas[2]
            in_p += deltas[3]
            cpu = max(cpu, deltas[4])
            for i, extra in enumerate(deltas[5]):
                net[i] += extra
        self.eth[0] += in_b
        self.eth[1] += out_b
        self.eth[2] += in_p
        self.eth[3] += out_p
        for i, value in enumerate(net):
            self.net[i] += value
        period_start = self.last_ms
        self.last_ms = now_ms
        seq, self.seq = self.seq, self.seq + 1
        memory_total = rates.memory_total
        load = cpu / 100 * (4 if cpu > 90 else 1)
        return TelemetryReport(
            seq=seq, collected_at_ms=now_ms, period_start_ms=period_start,
            agent_version=AGENT_VERSION, boot_id=self.boot_id,
            uptime_s=(now_ms - self.boot_ms) / 1000, cpu_percent=min(cpu, 100.0),
            load_1=load, load_5=load * 0.9, load_15=load * 0.8,
            memory_total_bytes=memory_total,
            memory_available_bytes=int(memory_total * rng.uniform(0.35, 0.45)),
            process_count=rates.processes + rng.randint(-2, 2) + len(new_exes),
            disks=[DiskUsage(mount="/", total_bytes=512 << 20, used_bytes=300 << 20,
                             free_bytes=212 << 20)],
            interfaces=[
                InterfaceCounters(name="eth0", bytes_in=int(self.eth[0]),
                                  bytes_out=int(self.eth[1]), packets_in=int(self.eth[2]),
                                  packets_out=int(self.eth[3])),
            ],
            net=NetworkCounters(**{name: int(v) for name, v in zip(_NET_FIELDS, self.net,
                                                                   strict=True)}),
            listening=listening, connections=connections, new_executables=new_exes,
            auth_failures=0, auth_source="/var/log/messages",
            samples=period.samples,
            destinations_seen=period.destinations_seen(listening, connections),
            listeners_opened=period.opened,
            processes=[self._main_process(own_cpu, dt), *period.processes],
        )

    def _main_process(self, cpu: float, dt: float) -> ProcessUsage:
        name = {Profile.CAMERA: "streamer", Profile.SENSOR: "sensord",
                Profile.GATEWAY: "mosquitto"}[self.profile]
        return ProcessUsage(pid=100 + self.index % 1000, name=name, exe=f"/usr/bin/{name}",
                            cpu_seconds=cpu * MAIN_PROCESS_SHARE * dt / 100)

    def _normal_connections(self) -> list[Connection]:
        rng = self.rng
        if self.profile is Profile.GATEWAY:
            conns = [
                Connection(proto=TCP, local_address=self.address, local_port=1883,
                           remote_address=peer, remote_port=rng.randint(32768, 60999),
                           process="mosquitto")
                for peer in self.peers
            ]
            conns += [
                Connection(proto=TCP, local_address=self.address,
                           local_port=rng.randint(32768, 60999), remote_address=peer,
                           remote_port=502, process="modbusd")
                for peer in self.peers[:4]
            ]
            # What it collects goes upstream over its broker's bridge, like any gateway's.
            conns.append(Connection(proto=TCP, local_address=self.address,
                                    local_port=41000 + self.index % 20000,
                                    remote_address=self.upstream[0],
                                    remote_port=self.upstream[1], process="mosquitto"))
            return conns
        process = "streamer" if self.profile is Profile.CAMERA else "sensord"
        return [Connection(proto=TCP, local_address=self.address, local_port=41000 + self.index
                           % 20000, remote_address=self.upstream[0],
                           remote_port=self.upstream[1], process=process)]


_Deltas = tuple[float, float, float, float, float, list[float]]


@dataclass(slots=True)
class _Period:
    """What the agent's samples accumulate over one report period, besides the instant."""

    since_ms: int
    until_ms: int
    samples: int
    seen: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    opened: list[ListenerOpened] = field(default_factory=list)
    processes: list[ProcessUsage] = field(default_factory=list)

    def destinations_seen(self, listening: list[ListeningSocket],
                          connections: list[Connection]) -> list[DestinationSeen]:
        """Beyond what the scenarios saw, every outbound connection open at the report was
        seen by the period's samples too (the devices' own are open all along)."""
        inbound = {(s.proto, s.port) for s in listening}
        seen = dict(self.seen)
        for c in connections:
            if (c.proto, c.local_port) not in inbound:
                seen.setdefault((c.remote_address, c.remote_port), (self.samples, 1))
        return [DestinationSeen(proto=TCP, address=a, port=p, samples=n, connections=k)
                for (a, p), (n, k) in sorted(seen.items())]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class _Effects:
    """What a scenario adds to one telemetry interval of a device, besides its counters."""

    active: ActiveScenario
    device: DeviceModel
    dt: float
    listening: list[ListeningSocket]
    connections: list[Connection]
    new_exes: list[NewExecutable]
    period: _Period

    @property
    def subnet(self) -> str:
        return self.device.address.rsplit(".", 1)[0]

    def ephemeral_port(self) -> int:
        return self.device.rng.randint(32768, 60999)

    def connect(self, remote_address: str, remote_port: int, process: str,
                local_port: int | None = None) -> None:
        self.connections.append(Connection(
            proto=TCP, local_address=self.device.address,
            local_port=self.ephemeral_port() if local_port is None else local_port,
            remote_address=remote_address, remote_port=remote_port, process=process))
        # Open at the report's instant, so in its last sample at least.
        self.period.seen.setdefault((remote_address, remote_port), (1, 1))

    def run(self, name: str, exe: str, cpu_percent: float) -> None:
        """The scenario's process ran over its part of the period at ``cpu_percent``."""
        start = max(self.active.start_ms, self.period.since_ms)
        self.period.processes.append(ProcessUsage(
            pid=4000 + len(self.period.processes), name=name, exe=exe,
            cpu_seconds=cpu_percent * self.dt / 100,
            started_at_ms=start if self.active.start_ms > self.period.since_ms else None))

    def announce(self, path: str, size_bytes: int) -> None:
        """A new executable shows up once, on the scenario's first interval."""
        if not self.active.announced:
            self.active.announced = True
            self.new_exes.append(NewExecutable(path=path, sha256=_sha(self.active.target),
                                               size_bytes=size_bytes))


def _port_scan(e: _Effects, net: list[float]) -> _Totals:
    rng = e.device.rng
    syns = 160 * e.dt
    net[0], net[2], net[4] = syns, syns * 0.97, syns * 0.02
    for _ in range(rng.randint(1, 3)):  # the few that answered
        local_port = e.ephemeral_port()  # drawn first: a seed replays the same fleet
        e.connect(f"{e.subnet}.{rng.randint(2, 253)}", rng.choice((23, 2323, 22, 80)),
                  "dvrHelper", local_port)
    e.run("dvrHelper", "/tmp/dvrHelper", 25.0)  # noqa: S108 - a reported path
    return syns * 60, syns * 54, syns, syns * 0.97, 25.0


def _telnet_bruteforce(e: _Effects, net: list[float]) -> _Totals:
    attempts = 4 * e.dt
    net[0], net[2] = attempts, attempts * 0.1
    first = int(e.active.target.rsplit(".", 1)[1])
    for n in range(e.device.rng.randint(3, 8)):
        e.connect(f"{e.subnet}.{(first + n) % 252 + 2}", 23, "dvrHelper")
    e.run("dvrHelper", "/tmp/dvrHelper", 20.0)  # noqa: S108 - a reported path
    return attempts * 320, attempts * 410, attempts * 12, attempts * 11, 20.0


def _exfiltration(e: _Effects, net: list[float]) -> _Totals:
    sent = 1_500_000 * e.dt
    e.connect(e.active.target, e.active.port, "curl")
    e.run("curl", "/usr/bin/curl", 35.0)
    net[0] = e.dt / 120
    return sent, sent * 0.02, sent / 1400, sent * 0.02 / 66, 35.0


def _c2_beacon(e: _Effects, net: list[float]) -> _Totals:
    active, period = e.active, e.period
    beacons = e.dt / 60
    net[0] = beacons
    visible_ms, connections = active.beacons(period.since_ms, period.until_ms)
    if connections:
        samples = min(max(round(visible_ms / SAMPLE_MS), 1), period.samples)
        period.seen[(active.target, active.port)] = (samples, connections)
        e.run("sh", "/bin/busybox", 0.0)
    if (period.until_ms - active.start_ms) % BEACON_EVERY_MS < BEACON_OPEN_MS:
        e.connect(active.target, active.port, "sh")  # caught open at the report's instant
    return beacons * 600, beacons * 350, beacons * 8, beacons * 7, 0.0


def _new_listener(e: _Effects, net: list[float]) -> _Totals:
    e.listening.append(ListeningSocket(proto=TCP, address=ANY, port=e.active.port,
                                       process="busybox"))
    if e.active.start_ms > e.period.since_ms:  # opened in this period
        e.period.opened.append(ListenerOpened(proto=TCP, address=ANY, port=e.active.port,
                                              opened_at_ms=e.active.start_ms))
    e.run("busybox", BIND_SHELL, 0.0)
    e.announce(BIND_SHELL, 87_412)
    return 0.0, 0.0, 0.0, 0.0, 0.0


def _cryptominer(e: _Effects, net: list[float]) -> _Totals:
    e.connect(e.active.target, e.active.port, "kdevtmpfsi")
    e.announce(MINER, 2_380_000)
    dt = e.dt
    pinned = e.device.rng.uniform(97.0, 100.0)
    e.run("kdevtmpfsi", MINER, pinned)
    return 300 * dt, 500 * dt, 3 * dt, 4 * dt, pinned


def _flood(e: _Effects, net: list[float]) -> _Totals:
    datagrams = 40_000 * e.dt
    net[8] = datagrams
    e.run("dvrHelper", "/tmp/dvrHelper", 45.0)  # noqa: S108 - a reported path
    return datagrams * 512, 0.0, datagrams, 0.0, 45.0


# (bytes out, bytes in, packets out, packets in, cpu floor)
_Totals = tuple[float, float, float, float, float]
_SCENARIO_EFFECTS: dict[Scenario, Callable[[_Effects, list[float]], _Totals]] = {
    Scenario.PORT_SCAN: _port_scan,
    Scenario.TELNET_BRUTEFORCE: _telnet_bruteforce,
    Scenario.EXFILTRATION: _exfiltration,
    Scenario.C2_BEACON: _c2_beacon,
    Scenario.NEW_LISTENER: _new_listener,
    Scenario.CRYPTOMINER: _cryptominer,
}


def _apply(active: ActiveScenario, device: DeviceModel, dt: float,
           listening: list[ListeningSocket], connections: list[Connection],
           new_exes: list[NewExecutable], period: _Period) -> _Deltas:
    """(bytes out, bytes in, packets out, packets in, cpu floor, net counter deltas)."""
    net = [0.0] * len(_NET_FIELDS)
    effects = _Effects(active, device, dt, listening, connections, new_exes, period)
    totals = _SCENARIO_EFFECTS.get(active.scenario, _flood)(effects, net)
    return (*totals, net)


def scenario_target(scenario: Scenario, device: DeviceModel) -> tuple[str, int]:
    """Where the attack goes (kept in the ground truth)."""
    rng = device.rng
    local = device.address.rsplit(".", 1)[0]
    if scenario is Scenario.PORT_SCAN:
        return f"{local}.0/24", 23
    if scenario is Scenario.TELNET_BRUTEFORCE:
        return f"{local}.{rng.randint(2, 253)}", 23
    if scenario is Scenario.EXFILTRATION:
        return f"203.0.113.{rng.randint(150, 250)}", 443
    if scenario is Scenario.C2_BEACON:
        return f"198.51.100.{rng.randint(60, 90)}", rng.choice((443, 6667, 8443))
    if scenario is Scenario.NEW_LISTENER:
        return ANY, rng.choice((4444, 31337, 9999))
    if scenario is Scenario.CRYPTOMINER:
        return f"203.0.113.{rng.randint(60, 90)}", 3333
    return f"{local}.{rng.randint(2, 253)}", 80
