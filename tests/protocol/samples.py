"""Valid messages of every kind, for round trips and as seeds for mutation."""

from __future__ import annotations

from fleetguard.protocol import (
    CheckOutcome,
    CheckStatus,
    Command,
    CommandName,
    CommandResult,
    CommandStatus,
    Connection,
    DestinationSeen,
    DiskUsage,
    Heartbeat,
    InterfaceCounters,
    ListenerOpened,
    ListeningSocket,
    Message,
    NetworkCounters,
    NewExecutable,
    ProcessUsage,
    TelemetryReport,
    TransportProto,
)

BOOT_ID = "3f0e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b"
T0 = 1_760_000_000_000


def telemetry(**overrides: object) -> TelemetryReport:
    fields: dict[str, object] = {
        "seq": 7,
        "collected_at_ms": T0 + 300_000,
        "period_start_ms": T0,
        "agent_version": "0.1.0",
        "boot_id": BOOT_ID,
        "uptime_s": 1234.5,
        "cpu_percent": 12.5,
        "load_1": 0.5,
        "load_5": 0.25,
        "load_15": 0.125,
        "memory_total_bytes": 2**30,
        "memory_available_bytes": 2**29,
        "process_count": 87,
        "disks": [DiskUsage(mount="/", total_bytes=8 * 2**30, used_bytes=2**30, free_bytes=7 * 2**30)],
        "interfaces": [
            InterfaceCounters(name="eth0", bytes_in=10, bytes_out=20, packets_in=1, packets_out=2),
            InterfaceCounters(name="lo", bytes_in=5, bytes_out=5, packets_in=1, packets_out=1, drops_in=3),
        ],
        "net": NetworkCounters(
            tcp_active_opens=40, tcp_passive_opens=3, tcp_attempt_fails=2, tcp_estab_resets=1,
            tcp_out_resets=4, tcp_retrans_segs=9, tcp_in_errors=0, udp_in_datagrams=100,
            udp_out_datagrams=90, udp_no_ports=1, udp_in_errors=0,
        ),
        "listening": [
            ListeningSocket(proto=TransportProto.TCP, address="0.0.0.0", port=22, pid=412, process="sshd"),
            ListeningSocket(proto=TransportProto.UDP, address="::", port=5353),
        ],
        "connections": [
            Connection(
                proto=TransportProto.TCP, local_address="192.168.1.20", local_port=51514,
                remote_address="203.0.113.9", remote_port=8883, pid=900, process="fleetguard-agent",
            ),
            Connection(
                proto=TransportProto.TCP, local_address="fe80::1%eth0", local_port=22,
                remote_address="fe80::2%eth0", remote_port=40000,
            ),
        ],
        "new_executables": [
            NewExecutable(path="/tmp/.x/mirai", sha256="a" * 64, size_bytes=80_000, pid=4242),
            NewExecutable(path="/usr/bin/huge", size_bytes=2**40),
        ],
        "new_executables_pending": 3,
        "auth_failures": 17,
        "auth_source": "/var/log/auth.log",
        "reports_dropped": 2,
    }
    fields.update(overrides)
    return TelemetryReport.model_validate(fields, strict=False)


def heartbeat() -> Heartbeat:
    return Heartbeat(
        sent_at_ms=T0, boot_id=BOOT_ID, uptime_s=3.25, agent_version="0.1.0",
        last_report_seq=6, buffered_reports=2, reports_dropped=0,
    )


def command() -> Command:
    return Command(
        id="cmd-01", name=CommandName.RUN_CHECKS, issued_at_ms=T0, expires_at_ms=T0 + 60_000,
        checks=["ssh.password_auth", "telnet.open"],
    )


def command_result() -> CommandResult:
    return CommandResult(
        id="cmd-01", name=CommandName.RUN_CHECKS, status=CommandStatus.OK, started_at_ms=T0,
        finished_at_ms=T0 + 40, detail="2 checks run",
        checks=[
            CheckOutcome(check_id="ssh.password_auth", status=CheckStatus.FAIL, detail="enabled"),
            CheckOutcome(check_id="telnet.open", status=CheckStatus.PASS),
        ],
    )


def all_messages() -> list[Message]:
    return [telemetry(), telemetry_with_activity(), heartbeat(), command(), command_result()]


def telemetry_with_activity(**overrides: object) -> TelemetryReport:
    """A report from an agent that samples between reports: what it saw over the period."""
    fields: dict[str, object] = {
        "samples": 300,
        "destinations_seen": [
            DestinationSeen(proto=TransportProto.TCP, address="203.0.113.9", port=8883,
                            samples=300, connections=1),
            DestinationSeen(proto=TransportProto.TCP, address="198.51.100.66", port=6667,
                            samples=60, connections=60),
        ],
        "destinations_omitted": 2,
        "listeners_opened": [
            ListenerOpened(proto=TransportProto.TCP, address="0.0.0.0", port=4444,
                           opened_at_ms=T0 + 12_000, closed=True),
        ],
        "processes": [
            ProcessUsage(pid=4242, name="kdevtmpfsi", exe="/tmp/kdevtmpfsi", cpu_seconds=297.5,
                         started_at_ms=T0 + 1_000),
            ProcessUsage(pid=900, name="fleetguard-agent", cpu_seconds=0.75),
            ProcessUsage(pid=5000, name="sh", exe="/bin/busybox", cpu_seconds=0.01,
                         started_at_ms=T0 + 20_000, exited=True),
        ],
        "processes_omitted": 40,
    }
    fields.update(overrides)
    return telemetry(**fields)
