"""Telemetry ingestion end to end: bytes in -> decoded and validated -> committed to the database.

For SQLite and PostgreSQL (when reachable on 127.0.0.1:5432) this measures:

1. the ceiling: decoding and validating the same payloads alone (no storage), one thread;
2. sustained ingestion: every report submitted as fast as the service takes it (CBOR and
   JSON mixed), until the last one is committed -> reports/s, and the ratio to (1);
3. latency at the target rate: reports offered at --rate per second for --seconds;
   p50/p99 from submit to commit.

Reports are realistic (tests/protocol/samples.py: 2 interfaces, 2 listening sockets,
2 connections, 2 new executables, disks, kernel counters), each device's counters and seq
advance. Target: 5,000 reports/s on each database (1.5 million devices every 5 minutes).

    python benchmarks/bench_ingest.py [--devices 2000] [--reports 60000] [--rate 5000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from tests.protocol import samples

from fleetguard.core.clock import utcnow
from fleetguard.protocol import (
    InterfaceCounters,
    MessageKind,
    decode_message,
    encode_message,
    to_millis,
)
from fleetguard.registry import service as registry
from fleetguard.store import Database, open_database, upgrade_database
from fleetguard.telemetry import Committed, IngestService

PG_ADMIN = os.environ.get("FLEETGUARD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class Payload:
    device: str
    data: bytes
    content_type: str


def make_payloads(devices: list[str], per_device: int, first_seq: int) -> list[Payload]:
    now = to_millis(utcnow())
    out: list[Payload] = []
    for round_ in range(per_device):
        seq = first_seq + round_
        at = now - (per_device - round_) * 1000
        for i, device in enumerate(devices):
            report = samples.telemetry(
                seq=seq, collected_at_ms=at, period_start_ms=at - 1000, cpu_percent=float((i + seq) % 100),
                interfaces=[
                    InterfaceCounters(name="eth0", bytes_in=1000 * seq, bytes_out=5000 * seq,
                                      packets_in=10 * seq, packets_out=20 * seq),
                    InterfaceCounters(name="lo", bytes_in=5, bytes_out=5, packets_in=1, packets_out=1),
                ],
            )
            content_type = "application/json" if (i + seq) % 4 == 0 else "application/cbor"
            out.append(Payload(device, encode_message(report, content_type), content_type))
    return out


def register(db: Database, n: int) -> list[str]:
    with db.session() as session:
        return [registry.register_device(session, name=f"bench-{i}", actor="bench").id for i in range(n)]


def decode_ceiling(payloads: list[Payload]) -> float:
    start = time.perf_counter()
    for p in payloads:
        decode_message(p.data, p.content_type, expect=MessageKind.TELEMETRY)
    return len(payloads) / (time.perf_counter() - start)


class Sink:
    """Submit->commit latencies of the current phase (the service outlives the phases)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def committed(self, done: Sequence[Committed]) -> None:
        now = time.perf_counter()
        with self.lock:
            self.latencies.extend(now - c.submitted for c in done)

    def take(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out


def sustained(service: IngestService, sink: Sink, payloads: list[Payload]) -> tuple[float, list[float]]:
    sink.take()
    before = service.stats().stored
    start = time.perf_counter()
    for p in payloads:
        service.submit(p.device, MessageKind.TELEMETRY, p.data, p.content_type, timeout=None)
    service.flush(timeout=600)
    elapsed = time.perf_counter() - start
    stored = service.stats().stored - before
    assert stored == len(payloads), (stored, len(payloads))
    return len(payloads) / elapsed, sink.take()


def paced(service: IngestService, sink: Sink, payloads: list[Payload], rate: float) -> tuple[float, list[float]]:
    sink.take()
    start = time.perf_counter()
    for i, p in enumerate(payloads):
        delay = start + i / rate - time.perf_counter()
        if delay > 0.001:
            time.sleep(delay)
        service.submit(p.device, MessageKind.TELEMETRY, p.data, p.content_type, timeout=None)
    offered = len(payloads) / (time.perf_counter() - start)
    service.flush(timeout=600)
    return offered, sink.take()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def bench(name: str, url: str, args: argparse.Namespace) -> None:
    db = open_database(url)
    upgrade_database(db)
    devices = register(db, args.devices)
    per_device = max(1, args.reports // args.devices)
    sink = Sink()
    service = IngestService(db, sweep_every_s=None, compact_every_s=None, on_committed=sink.committed)
    service.start()
    # Every device reports once first: steady state (its row exists), not first sight.
    sustained(service, sink, make_payloads(devices, 1, 1))
    payloads = make_payloads(devices, per_device, 2)
    ceiling = decode_ceiling(payloads)
    rate, lat = sustained(service, sink, payloads)
    n_paced = int(args.rate * args.seconds)
    paced_payloads = make_payloads(devices, max(1, n_paced // args.devices), 2 + per_device)
    offered, plat = paced(service, sink, paced_payloads, args.rate)
    service.stop()
    size = statistics.mean(len(p.data) for p in payloads)
    print(f"\n[{name}] {len(payloads)} reports from {args.devices} devices, mean {size:.0f} bytes (CBOR/JSON 3:1)")
    print(f"  decode+validate alone (ceiling):  {ceiling:10,.0f} reports/s")
    print(f"  ingested end to end (stored):     {rate:10,.0f} reports/s   ratio to ceiling {rate / ceiling:.2f}   "
          f"vs target 5,000: {rate / 5000:.2f}x")
    print(f"  saturated submit->commit latency: p50 {pct(lat, 0.5):7.1f} ms  p99 {pct(lat, 0.99):7.1f} ms (queue backlog)")
    print(f"  at {offered:,.0f} reports/s offered: p50 {pct(plat, 0.5):7.1f} ms  p99 {pct(plat, 0.99):7.1f} ms "
          f"({len(plat)} reports)")
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"bench_ingest: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            bench("SQLite (WAL)", f"sqlite:///{tmp}/bench.db", args)
    if args.db in ("postgresql", "both"):
        name = f"fg_bench_{secrets.token_hex(4)}"
        try:
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            print(f"\n[PostgreSQL] skipped: not reachable ({str(exc).splitlines()[0]})")
            return
        try:
            bench("PostgreSQL", PG_ADMIN.rsplit("/", 1)[0] + "/" + name, args)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
