"""Message schemas of the device channel, version 1.

Every message is an object (JSON) or a map (CBOR) with two envelope fields: ``"v"``, the
schema version, and ``"type"``, the message kind. The device's identity is never part of
a message: it comes from the verified client certificate (and, over MQTT, the topic).

Limits are part of the version: a list or string longer than its limit is refused on
the way in, and the agent truncates to them on the way out (counting what it left out
in the ``*_omitted`` fields, because a device with 50,000 connections is itself a signal).

Counters come in two kinds, and the field docs say which:
- *cumulative since boot* (interface bytes, TCP opens, ...): the server takes differences
  between reports of the same ``boot_id``; a lost report loses no information.
- *since the previous report* (auth failures, new executables): the window is
  ``period_start_ms`` to ``collected_at_ms``.

What is open at the instant of a report misses short-lived activity (a beacon that connects
for 200 ms, a listener opened and closed again). An agent that samples between reports adds
what it accumulated over the period (``samples``, ``destinations_seen``, ``listeners_opened``,
``processes``); these fields are optional and absent (None) in a report from an agent that
does not sample, which stays valid.

Timestamps are integer milliseconds since the Unix epoch, UTC (``*_ms`` fields); the
helpers :func:`to_millis` and :func:`from_millis` convert from and to aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})

# Limits of version 1. Changing one is a protocol change: add a version instead.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_DEPTH = 16
MAX_LISTENING = 512
MAX_CONNECTIONS = 1024
MAX_INTERFACES = 64
MAX_DISKS = 32
MAX_NEW_EXECUTABLES = 64
MAX_CHECKS = 128
# Accumulated over a report period by a sampling agent (additive in version 1: optional).
MAX_DESTINATIONS_SEEN = 256
MAX_LISTENERS_OPENED = 64
MAX_PROCESSES = 64
MAX_PATH_CHARS = 1024
MAX_NAME_CHARS = 128
MAX_DETAIL_CHARS = 2048

_U64_MAX = 2**64 - 1
_MS_MAX = 2**53  # far beyond any real date, and exact in a double

# Strict int: Literal[1] would also take 1.0 and True, which are not version 1 on the wire.
Version = Annotated[int, Field(ge=PROTOCOL_VERSION, le=PROTOCOL_VERSION)]
U64 = Annotated[int, Field(ge=0, le=_U64_MAX)]
Millis = Annotated[int, Field(ge=0, le=_MS_MAX)]
Port = Annotated[int, Field(ge=0, le=65535)]
Pid = Annotated[int, Field(ge=0, le=2**31 - 1)]
NonNegFloat = Annotated[float, Field(ge=0.0, le=1e18)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]
Detail = Annotated[str, Field(max_length=MAX_DETAIL_CHARS)]
IfName = Annotated[str, Field(min_length=1, max_length=32)]
# An IPv4 or IPv6 address as text, with an optional IPv6 zone ("fe80::1%eth0").
IpText = Annotated[
    str, Field(max_length=64, pattern=r"^[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9_.-]{1,15})?$")
]
Sha256Hex = Annotated[str, Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")]
BootId = Annotated[
    str, Field(min_length=36, max_length=36, pattern=r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$")
]
CommandId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CheckId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
AgentVersion = Annotated[str, Field(min_length=1, max_length=64)]


class MessageKind(StrEnum):
    """The ``"type"`` of a message. Wire values are stable (pinned by a test)."""

    TELEMETRY = "telemetry"
    HEARTBEAT = "heartbeat"
    COMMAND = "command"
    COMMAND_RESULT = "command_result"


class CommandName(StrEnum):
    """The only commands a device accepts. Anything else is refused before it runs."""

    REPORT_NOW = "report_now"
    ROTATE_CERTIFICATE = "rotate_certificate"
    RUN_CHECKS = "run_checks"


class CommandStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"  # accepted and run, but it did not succeed
    REJECTED = "rejected"  # not run: expired, duplicate, or not allowed


class CheckStatus(StrEnum):
    PASS = "pass"  # noqa: S105 - a check outcome, not a password
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"


class TransportProto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


def to_millis(moment: datetime) -> int:
    """Milliseconds since the epoch for an aware datetime; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: wire timestamps are UTC and need a zone")
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


class WireModel(BaseModel):
    """Strict, closed and immutable: no coercion, no unknown fields, no NaN."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


# -- telemetry parts ------------------------------------------------------------------


class ListeningSocket(WireModel):
    """A TCP socket in LISTEN, or a bound UDP socket with no peer."""

    proto: TransportProto = Field(strict=False)
    address: IpText
    port: Port
    pid: Pid | None = None
    process: Name | None = None


class Connection(WireModel):
    """An established TCP connection (or a connected UDP socket) to a remote peer."""

    proto: TransportProto = Field(strict=False)
    local_address: IpText
    local_port: Port
    remote_address: IpText
    remote_port: Port
    pid: Pid | None = None
    process: Name | None = None


class InterfaceCounters(WireModel):
    """Per-interface traffic, cumulative since boot."""

    name: IfName
    bytes_in: U64
    bytes_out: U64
    packets_in: U64
    packets_out: U64
    errors_in: U64 = 0
    errors_out: U64 = 0
    drops_in: U64 = 0
    drops_out: U64 = 0


class NetworkCounters(WireModel):
    """Kernel TCP/UDP counters (/proc/net/snmp, snmp6), cumulative since boot.

    ``tcp_active_opens`` counts outbound connection attempts (SYNs sent), the signal of a
    device scanning or brute-forcing its peers; ``tcp_attempt_fails`` the ones refused.
    """

    tcp_active_opens: U64
    tcp_passive_opens: U64
    tcp_attempt_fails: U64
    tcp_estab_resets: U64
    tcp_out_resets: U64
    tcp_retrans_segs: U64
    tcp_in_errors: U64
    udp_in_datagrams: U64
    udp_out_datagrams: U64
    udp_no_ports: U64
    udp_in_errors: U64


class DiskUsage(WireModel):
    mount: PathText
    total_bytes: U64
    used_bytes: U64
    free_bytes: U64


class NewExecutable(WireModel):
    """An executable first seen running since the previous report.

    ``sha256`` is None when the file was over the agent's size cap or unreadable.
    """

    path: PathText
    sha256: Sha256Hex | None = None
    size_bytes: U64 | None = None
    pid: Pid | None = None


class DestinationSeen(WireModel):
    """An outbound destination the agent saw during the report period, in its samples.

    ``samples``: how many of the period's samples showed a socket to it (established,
    closing, or in TIME_WAIT, which keeps a closed connection visible for about a minute);
    ``connections``: how many distinct connections to it they showed (by local address and
    port), a lower bound on the connection attempts.
    """

    proto: TransportProto = Field(strict=False)
    address: IpText
    port: Port
    samples: U64
    connections: U64


class ListenerOpened(WireModel):
    """A socket that started listening during the period, also if it closed before the report.

    ``opened_at_ms`` is the first sample that showed it; ``closed``: it was no longer
    listening at the report.
    """

    proto: TransportProto = Field(strict=False)
    address: IpText
    port: Port
    opened_at_ms: Millis
    closed: bool = False


class ProcessUsage(WireModel):
    """A process that ran during the period, and the CPU it used in it (its own, per process).

    ``cpu_seconds`` is user plus system time over the period (all its threads), in seconds
    of one core; ``started_at_ms`` is set when it started during the period; ``exited``:
    gone before the report.
    """

    pid: Pid
    name: Name
    exe: PathText | None = None
    cpu_seconds: NonNegFloat
    started_at_ms: Millis | None = None
    exited: bool = False


class CheckOutcome(WireModel):
    check_id: CheckId
    status: CheckStatus = Field(strict=False)
    detail: Detail | None = None


# -- messages -------------------------------------------------------------------------


class TelemetryReport(WireModel):
    v: Version = PROTOCOL_VERSION
    type: Literal["telemetry"] = "telemetry"
    seq: U64  # per device, increasing across agent restarts
    collected_at_ms: Millis
    period_start_ms: Millis  # the previous report's collected_at_ms (or boot)
    agent_version: AgentVersion
    boot_id: BootId
    uptime_s: NonNegFloat
    cpu_percent: Percent
    load_1: NonNegFloat
    load_5: NonNegFloat
    load_15: NonNegFloat
    memory_total_bytes: U64
    memory_available_bytes: U64
    swap_total_bytes: U64 = 0
    swap_used_bytes: U64 = 0
    process_count: U64
    disks: list[DiskUsage] = Field(default_factory=list, max_length=MAX_DISKS)
    interfaces: list[InterfaceCounters] = Field(default_factory=list, max_length=MAX_INTERFACES)
    net: NetworkCounters | None = None
    listening: list[ListeningSocket] = Field(default_factory=list, max_length=MAX_LISTENING)
    listening_omitted: U64 = 0
    connections: list[Connection] = Field(default_factory=list, max_length=MAX_CONNECTIONS)
    connections_omitted: U64 = 0
    new_executables: list[NewExecutable] = Field(
        default_factory=list, max_length=MAX_NEW_EXECUTABLES
    )
    new_executables_pending: U64 = 0  # seen, not yet hashed: they come in a later report
    auth_failures: U64 | None = None  # since the previous report; None: no readable source
    auth_source: Name | None = None
    reports_dropped: U64 = 0  # reports the agent's buffer dropped so far (cumulative)
    # Accumulated by the agent's sampler over period_start_ms..collected_at_ms (None: the
    # agent does not sample). Lists are cut at their limit, the rest counted in *_omitted;
    # processes are the busiest first (those that used CPU or started in the period).
    samples: U64 | None = None
    destinations_seen: list[DestinationSeen] | None = Field(
        default=None, max_length=MAX_DESTINATIONS_SEEN
    )
    destinations_omitted: U64 = 0
    listeners_opened: list[ListenerOpened] | None = Field(
        default=None, max_length=MAX_LISTENERS_OPENED
    )
    listeners_opened_omitted: U64 = 0
    processes: list[ProcessUsage] | None = Field(default=None, max_length=MAX_PROCESSES)
    processes_omitted: U64 = 0

    @property
    def kind(self) -> MessageKind:
        return MessageKind.TELEMETRY

    @property
    def collected_at(self) -> datetime:
        return from_millis(self.collected_at_ms)


class Heartbeat(WireModel):
    v: Version = PROTOCOL_VERSION
    type: Literal["heartbeat"] = "heartbeat"
    sent_at_ms: Millis
    boot_id: BootId
    uptime_s: NonNegFloat
    agent_version: AgentVersion
    last_report_seq: U64 | None = None
    buffered_reports: U64 = 0
    reports_dropped: U64 = 0

    @property
    def kind(self) -> MessageKind:
        return MessageKind.HEARTBEAT


class Command(WireModel):
    """Server to device. ``checks`` narrows ``run_checks``; no other command takes arguments."""

    v: Version = PROTOCOL_VERSION
    type: Literal["command"] = "command"
    id: CommandId
    name: CommandName = Field(strict=False)
    issued_at_ms: Millis
    expires_at_ms: Millis | None = None
    checks: list[CheckId] | None = Field(default=None, max_length=MAX_CHECKS)

    @model_validator(mode="after")
    def _arguments_fit_the_command(self) -> Command:
        if self.checks is not None and self.name is not CommandName.RUN_CHECKS:
            raise ValueError("only run_checks takes 'checks'")
        if self.expires_at_ms is not None and self.expires_at_ms < self.issued_at_ms:
            raise ValueError("expires before it was issued")
        return self

    @property
    def kind(self) -> MessageKind:
        return MessageKind.COMMAND


class CommandResult(WireModel):
    v: Version = PROTOCOL_VERSION
    type: Literal["command_result"] = "command_result"
    id: CommandId
    name: CommandName = Field(strict=False)
    status: CommandStatus = Field(strict=False)
    detail: Detail | None = None
    started_at_ms: Millis
    finished_at_ms: Millis
    checks: list[CheckOutcome] | None = Field(default=None, max_length=MAX_CHECKS)

    @property
    def kind(self) -> MessageKind:
        return MessageKind.COMMAND_RESULT


Message = Annotated[
    TelemetryReport | Heartbeat | Command | CommandResult, Field(discriminator="type")
]
