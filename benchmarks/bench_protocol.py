"""Message decode + validation rate, JSON and CBOR, against the bare parser of the same bytes.

fleetguard's figure is ``decode_message``: the byte-limit check, parsing with its bounds
(for CBOR: no tags, no duplicate keys, depth limit, no trailing bytes), the envelope and
every schema limit and type check, and typed models out. The peer is the plain
``json.loads`` / ``cbor2.loads`` of the very same bytes, which checks nothing. Both run
on one pinned CPU, in the same process, on two sizes of telemetry report: a small
sensor and a busy gateway (200 connections, 40 listening sockets, 8 new executables).

    PYTHONPATH=src python benchmarks/bench_protocol.py [--seconds 2]

Sizing (issue 4): ingestion must reach 5,000 reports/s end to end on this 2-core
machine; the last lines say what share of one core decoding alone takes at that rate.
Garbage collection stays on (it is part of the real cost of building typed models).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import cbor2

from fleetguard.protocol import (
    Connection,
    ContentType,
    DiskUsage,
    InterfaceCounters,
    ListeningSocket,
    NetworkCounters,
    NewExecutable,
    TelemetryReport,
    TransportProto,
    decode_message,
    encode_message,
)

INGEST_TARGET_PER_SECOND = 5000


def _pin_to_one_cpu() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _report(connections: int, listening: int, executables: int) -> TelemetryReport:
    return TelemetryReport(
        seq=123456, collected_at_ms=1_760_000_300_000, period_start_ms=1_760_000_000_000,
        agent_version="0.1.0", boot_id="3f0e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b", uptime_s=86400.5,
        cpu_percent=23.5, load_1=0.8, load_5=0.6, load_15=0.5, memory_total_bytes=2**30,
        memory_available_bytes=2**29, swap_total_bytes=0, swap_used_bytes=0, process_count=143,
        disks=[DiskUsage(mount="/", total_bytes=8 * 2**30, used_bytes=2**30, free_bytes=7 * 2**30),
               DiskUsage(mount="/data", total_bytes=32 * 2**30, used_bytes=2**33, free_bytes=2**34)],
        interfaces=[
            InterfaceCounters(name=name, bytes_in=10**9 + i, bytes_out=10**8 + i, packets_in=10**6,
                              packets_out=10**5, errors_in=0, errors_out=0, drops_in=3, drops_out=0)
            for i, name in enumerate(["eth0", "lo", "wlan0"])
        ],
        net=NetworkCounters(tcp_active_opens=4000, tcp_passive_opens=300, tcp_attempt_fails=12,
                            tcp_estab_resets=4, tcp_out_resets=30, tcp_retrans_segs=800,
                            tcp_in_errors=0, udp_in_datagrams=10**5, udp_out_datagrams=10**5,
                            udp_no_ports=50, udp_in_errors=0),
        listening=[
            ListeningSocket(proto=TransportProto.TCP if i % 3 else TransportProto.UDP,
                            address="0.0.0.0", port=1000 + i, pid=300 + i, process=f"daemon{i}")
            for i in range(listening)
        ],
        connections=[
            Connection(proto=TransportProto.TCP, local_address="192.168.1.20",
                       local_port=40000 + i, remote_address=f"10.0.{i // 250}.{i % 250 + 1}",
                       remote_port=8883, pid=900, process="gateway-bridge")
            for i in range(connections)
        ],
        new_executables=[
            NewExecutable(path=f"/usr/lib/gateway/plugin-{i}", sha256=f"{i:064x}",
                          size_bytes=123_456, pid=2000 + i)
            for i in range(executables)
        ],
        auth_failures=2, auth_source="/var/log/auth.log",
    )


def _rate(func: Callable[[], object], seconds: float) -> float:
    for _ in range(200):  # warm up
        func()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            func()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    print(f"bench_protocol: {_pin_to_one_cpu()}, {args.seconds:g} s per measurement")
    reports = {"sensor": _report(2, 3, 0), "gateway": _report(200, 40, 8)}
    peers = {ContentType.JSON: json.loads, ContentType.CBOR: cbor2.loads}
    print(f"{'report':8} {'format':5} {'bytes':>7} {'fleetguard/s':>13} {'bare loads/s':>13} "
          f"{'ratio':>6} {'us/msg':>7}")
    rates: dict[str, float] = {}
    for label, report in reports.items():
        for content_type, bare in peers.items():
            data = encode_message(report, content_type)
            assert decode_message(data, content_type) == report
            ours = _rate(lambda d=data, c=content_type: decode_message(d, c), args.seconds)
            theirs = _rate(lambda d=data, f=bare: f(d), args.seconds)
            fmt = content_type.value.split("/")[1]
            rates[f"{label} {fmt}"] = ours
            print(f"{label:8} {fmt:5} {len(data):7d} {ours:13,.0f} {theirs:13,.0f} "
                  f"{ours / theirs:6.2f} {1e6 / ours:7.1f}")
    print(f"share of one core to decode {INGEST_TARGET_PER_SECOND:,} reports/s (the ingestion "
          "target) if every report were of one kind:")
    for case, rate in rates.items():
        print(f"  {case:13} {INGEST_TARGET_PER_SECOND / rate:6.0%}")


if __name__ == "__main__":
    main()
