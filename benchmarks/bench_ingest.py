"""Telemetry ingestion end to end, against the broker it sits behind, on SQLite and PostgreSQL.

In one run, for each database (PostgreSQL when reachable on 127.0.0.1:5432):

1. an installation (``init_installation``) with --devices enrolled devices (a key each,
   made here, a certificate from the fleet CA), and a real Mosquitto started by
   fleetguard's broker module (mutual TLS, dynsec ACLs per device) on a free port;
2. raw broker rate (the ceiling): a load generator child process drives one mutual-TLS
   connection per device with the simulator's MQTT transport (``fleetguard.sim``) and
   publishes QoS 1 reports as fast as the broker acknowledges them; a bare subscriber
   with the platform's service identity (the consumer's MQTT session, acknowledging at
   once and doing nothing else) counts what it receives. Same
   payloads (the simulator's camera/sensor/gateway reports, JSON), same listener;
3. end to end: the same load generator and payloads -> Mosquitto -> the platform's
   :class:`MqttConsumer` -> :class:`IngestService` -> database. ``max``: as fast as it
   goes, reports/s = reports committed / (first publish .. last commit); then paced at
   each of --rates reports/s: p50/p99 latency from publish (load generator's clock) to
   commit (the commit hook's clock; one machine, one clock). CPU seconds per report of
   the platform process and of the load generator are printed beside;
4. memory per simulated device: the load generator's RSS growth after connecting all
   devices, divided by their number;
5. the in-process figure: ``submit()`` -> database, no broker (CBOR/JSON 3:1), with the
   process's CPU time per report beside (steadier than the rate on a shared machine);
   ``--report-hook`` runs it with an ``on_report`` hook that only enqueues each report (what
   a detection consumer costs ingestion: the validated model kept and handed over).

Ratios printed: end to end against 5,000 reports/s (1.5 million devices every 5 min) and
against half the raw broker rate. Everything runs on the one machine: load generator,
broker, platform and PostgreSQL share its cores.

    python benchmarks/bench_ingest.py [--devices 500] [--reports 20000] [--rates 5000 1000]
    python benchmarks/bench_ingest.py --only inprocess --ip-reports 20000 [--report-hook]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from tests.protocol import samples

from fleetguard.auditlog import attach_audit_keys
from fleetguard.core.clock import utcnow
from fleetguard.core.runtime import tune_gc_for_service
from fleetguard.keys import MasterKey
from fleetguard.protocol import (
    InterfaceCounters,
    MessageKind,
    encode_message,
    to_millis,
)
from fleetguard.registry import service as registry
from fleetguard.store import Database, open_database, upgrade_database
from fleetguard.telemetry import Committed, IngestService

PG_ADMIN = os.environ.get("FLEETGUARD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGET = 5000.0


# -- the load generator (a child process) ----------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def publish_all(clients: list[Any], topics: list[str], payloads: list[list[tuple[int, bytes]]],
                      rate: float | None) -> tuple[list[list[float]], int]:
    """Every device publishes its payloads in order, each after the PUBACK of the last."""
    n = len(clients)
    stamps: list[list[float]] = []
    failed = 0
    mono0 = time.monotonic()

    async def device(i: int) -> None:
        nonlocal failed
        for r, (seq, data) in enumerate(payloads[i]):
            if rate is not None:
                delay = mono0 + (r * n + i) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent = time.time()
            try:
                await clients[i].publish(topics[i], data)
            except (OSError, ConnectionError, TimeoutError):
                failed += 1
                continue
            stamps.append([i, seq, sent])

    await asyncio.gather(*(device(i) for i in range(n)))
    return stamps, failed


def loadgen(spec_file: Path) -> None:
    """Connect every device, then run the phases the parent asks for, one per stdin line.

    A phase is ``<rate|max> <rounds>``: each device publishes ``rounds`` reports (QoS 1,
    each waiting for its PUBACK). Prints one JSON line per phase: publish stamps
    ``[[device_index, seq, unix_time], ...]``, sent and failed counts.
    """
    import random

    from fleetguard.protocol import ContentType, TopicKind, device_topic
    from fleetguard.sim import ContextFactory, DeviceModel, Profile, SimIdentity
    from fleetguard.sim.mqtt import MiniMqttClient

    spec = json.loads(spec_file.read_text())
    identities = [SimIdentity(d["id"], d["name"], d["key"].encode(), d["chain"].encode())
                  for d in spec["devices"]]
    profiles = [Profile.CAMERA, Profile.SENSOR, Profile.SENSOR, Profile.GATEWAY]
    now = int(time.time() * 1000)
    models = [DeviceModel(index=i, profile=profiles[i % 4], rng=random.Random(i), now_ms=now)
              for i in range(len(identities))]
    contexts = ContextFactory(spec["ca_pem"].encode())
    topics = [device_topic(__import__("uuid").UUID(i.device_id), TopicKind.TELEMETRY) for i in identities]

    def make(rounds: int) -> list[list[tuple[int, bytes]]]:
        start = int(time.time() * 1000) - rounds * 1000
        out = []
        for model in models:
            reports = [model.report(start + r * 1000) for r in range(rounds)]
            out.append([(rep.seq, encode_message(rep, ContentType.JSON)) for rep in reports])
        return out

    async def main() -> None:
        base = rss()
        limit = asyncio.Semaphore(100)
        clients: list[MiniMqttClient] = []

        async def connect(identity: SimIdentity) -> MiniMqttClient:
            async with limit:
                return await MiniMqttClient.connect(
                    spec["host"], spec["port"], contexts(identity), client_id=identity.device_id,
                    keepalive_s=120)

        clients = list(await asyncio.gather(*(connect(i) for i in identities)))
        connected = rss()
        print(json.dumps({"ready": True, "rss_per_device": (connected - base) / len(clients),
                          "devices": len(clients)}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip() or line.strip() == "quit":
                break
            rate_text, rounds_text = line.split()
            rounds = int(rounds_text)
            payloads = make(rounds)
            rate = None if rate_text == "max" else float(rate_text)
            start, cpu_start = time.time(), time.process_time()
            stamps, failed = await publish_all(clients, topics, payloads, rate)
            publish_cpu = time.process_time() - cpu_start
            size = statistics.mean(len(d) for p in payloads for _, d in p)
            print(json.dumps({"start": start, "end": time.time(), "sent": len(stamps),
                              "publish_cpu": publish_cpu,
                              "failed": failed, "size": size, "stamps": stamps}), flush=True)
        for client in clients:
            client.disconnect()

    asyncio.run(main())
    contexts.close()


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_idle() -> float:
    """Idle CPU seconds of the whole machine so far (all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


class LoadGen:
    def __init__(self, spec: dict[str, Any], directory: Path) -> None:
        path = directory / "loadgen.json"
        path.write_text(json.dumps(spec))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--loadgen", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.hello = self._line()

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited ({self.proc.wait()})")
        data: dict[str, Any] = json.loads(line)
        return data

    def phase(self, rate: str, rounds: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{rate} {rounds}\n")
        self.proc.stdin.flush()
        return self._line()

    def cpu(self) -> float:
        """CPU seconds the load generator has used so far."""
        return process_cpu(self.proc.pid)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


# -- the platform side ----------------------------------------------------------------


def enroll_devices(db: Any, ca: Any, n: int) -> list[dict[str, str]]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from fleetguard.identity import service as identity

    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{i}")]))
               .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        with db.session() as session:
            device = registry.register_device(session, name=f"bench-{i}", actor="bench")
            token, _ = identity.create_enrollment_token(session, ca, device_id=device.id, actor="bench", issuer=None)
            result = identity.enroll_with_token(session, ca, token=token, csr=csr, source="127.0.0.1")
        out.append({"id": device.id, "name": f"bench-{i}", "chain": result.chain_pem,
                    "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()})
    return out


class CommitClock:
    """Wall-clock commit time of every (device, seq), from the ingest commit hook."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()

    def committed(self, done: Sequence[Committed]) -> None:
        now = time.time()
        with self.lock:
            for c in done:
                if c.seq is not None:
                    self.at[(c.device_id, c.seq)] = now


def raw_rate(files: Any, gen: LoadGen, rounds: int) -> tuple[float, int, int, float]:
    """The cheapest subscriber there is here (the consumer's own MQTT session with the
    service identity, counting and acknowledging at once) counting what the broker delivers."""
    from fleetguard.core.tls import client_context
    from fleetguard.telemetry._mqtt5 import Mqtt5Session, Publish, SessionSettings

    got = {"n": 0, "last": 0.0}
    ready = threading.Event()

    def on_publish(message: Publish, generation: int) -> None:
        got["n"] += 1
        got["last"] = time.time()
        if message.packet_id:
            session.ack(generation, message.packet_id)

    session = Mqtt5Session(
        SessionSettings(host=files.connect_host, port=files.port,
                        context=client_context(ca_file=files.ca_bundle,
                                               cert_file=files.service_cert,
                                               key_file=files.service_key),
                        client_id=f"bench-raw-{secrets.token_hex(3)}", session_expiry_s=0),
        ["fg/d/+/telemetry"], on_publish, on_connected=lambda _present: ready.set())
    thread = threading.Thread(target=session.run, daemon=True)
    thread.start()
    assert ready.wait(15)
    result = gen.phase("max", rounds)
    deadline = time.time() + 60
    while got["n"] < result["sent"] and time.time() < deadline:
        time.sleep(0.05)
    session.stop()
    thread.join(10)
    session.close()
    received = got["n"]
    return received / (got["last"] - result["start"]), result["sent"], received, result["size"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def end_to_end(db: Any, files: Any, gen: LoadGen, devices: list[dict[str, str]], rounds: int,
               rates: list[float], seconds: float, broker_pid: int | None) -> dict[str, Any]:
    from fleetguard.telemetry.mqtt_consumer import MqttConsumer, MqttSettings

    clock = CommitClock()
    ingest = IngestService(db, sweep_every_s=None, compact_every_s=None, on_committed=clock.committed)
    consumer = MqttConsumer(ingest, MqttSettings(
        host=files.connect_host, port=files.port, ca_file=files.ca_bundle,
        cert_file=files.service_cert, key_file=files.service_key,
        client_id=f"fleetguard-ingest-bench-{secrets.token_hex(3)}"))
    consumer.start()
    assert consumer.wait_connected(15)
    time.sleep(0.5)  # the subscription lands
    ids = [d["id"] for d in devices]
    out: dict[str, Any] = {}
    expected = 0
    try:
        # Warm-up, not reported: one report per device, so the measured phases see a
        # fleet that has reported before (a device's first report creates its row).
        gen.phase("max", 1)
        deadline = time.time() + 60
        while len(clock.at) < len(devices) and time.time() < deadline:
            time.sleep(0.1)
        expected = len(clock.at)
        phases = [("max", "max", rounds)] + [
            (f"paced {r:g}", str(r), max(1, int(r * seconds) // len(devices))) for r in rates]
        for name, phase_rate, n_rounds in phases:
            before = ingest.stats()
            cpu0, gen0, wall0 = time.process_time(), gen.cpu(), time.time()
            broker0, idle0 = process_cpu(broker_pid), machine_idle()
            result = gen.phase(phase_rate, n_rounds)
            gen_ready = gen.cpu() - gen0 - result["publish_cpu"]  # making the payloads
            keys = [(ids[i], seq) for i, seq, _ in result["stamps"]]
            deadline = time.time() + 120
            while len(clock.at) < expected + len(keys) and time.time() < deadline:
                time.sleep(0.1)  # a cheap check: this process is the one measured
            expected += len(keys)
            after = ingest.stats()
            cpu = {"platform": time.process_time() - cpu0, "loadgen": gen.cpu() - gen0 - gen_ready,
                   "broker": process_cpu(broker_pid) - broker0, "idle": machine_idle() - idle0,
                   "wall": time.time() - wall0}
            with clock.lock:
                lat = [clock.at[(ids[i], seq)] - t for i, seq, t in result["stamps"] if (ids[i], seq) in clock.at]
                last = max(clock.at[k] for k in keys if k in clock.at)
            out[name] = {
                "sent": result["sent"], "failed": result["failed"], "committed": len(lat),
                "stored": after.stored - before.stored, "duplicates": after.duplicates - before.duplicates,
                "rate": len(lat) / (last - result["start"]),
                "offered": result["sent"] / (result["end"] - result["start"]),
                "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "cpu": cpu,
            }
    finally:
        consumer.stop()
        ingest.stop()
    out["consumer"] = consumer.stats
    return out


def run_platform(name: str, url: str, args: argparse.Namespace, directory: Path) -> None:
    from tests.processes import free_port

    from fleetguard.broker import BrokerConfig, running_broker
    from fleetguard.core.config import load_settings
    from fleetguard.identity.ca import open_installation_ca
    from fleetguard.install import init_installation, open_installation_database
    from fleetguard.keys import load_master_key

    os.chmod(directory, 0o711)  # as under /var/lib: the broker runs as its own account
    settings = load_settings(directory / "data", database_url=url)
    init_installation(settings, admin_password=secrets.token_urlsafe(16))
    db = open_installation_database(settings)
    ca = open_installation_ca(settings, load_master_key(settings))
    started = time.monotonic()
    devices = enroll_devices(db, ca, args.devices)
    enroll_s = time.monotonic() - started
    config = BrokerConfig(host="127.0.0.1", port=free_port(), persistence=False)
    rounds = max(1, args.reports // args.devices)
    try:
        with running_broker(settings, ca, db, config) as (process, _sync):
            files = process.files
            gen = LoadGen({"host": files.connect_host, "port": files.port,
                           "ca_pem": files.ca_bundle.read_text(), "devices": devices}, directory)
            try:
                raw, sent, received, size = raw_rate(files, gen, rounds)
                tune_gc_for_service()  # as `fleetguard serve` does before it serves
                e2e = end_to_end(db, files, gen, devices, rounds, args.rates, args.seconds,
                                 process.pid)
            finally:
                gen.close()
    finally:
        ca.close()
        db.dispose()
    m = e2e["max"]
    print(f"\n[{name}, end to end: {args.devices} devices -> Mosquitto (mTLS, dynsec) -> MqttConsumer -> database]")
    print(f"  {args.devices} devices enrolled in {enroll_s:.1f} s; reports: sim profiles, JSON, mean {size:.0f} bytes, QoS 1")
    print(f"  raw broker rate (publisher -> Mosquitto -> bare subscriber): {raw:8,.0f} msg/s  ({received}/{sent} received)")
    print(f"  ingested end to end, as fast as it goes:  {m['rate']:8,.0f} reports/s  ({m['committed']}/{m['sent']} committed, "
          f"{m['failed']} publish failures, {m['duplicates']} duplicates)")
    print(f"     vs target 5,000/s: {m['rate'] / TARGET:.2f}x   vs half the raw broker rate ({raw / 2:,.0f}): "
          f"{m['rate'] / (raw / 2):.2f}x")
    print(f"     publish->commit latency while saturated: p50 {m['p50']:7.1f} ms  p99 {m['p99']:7.1f} ms")
    c = m["cpu"]
    n = m["committed"]
    print(f"     CPU per report: platform process {1e6 * c['platform'] / n:.0f} us, "
          f"load generator {1e6 * c['loadgen'] / n:.0f} us (publishing), "
          f"Mosquitto {1e6 * c['broker'] / n:.0f} us; machine idle {1e6 * c['idle'] / n:.0f} us "
          f"(of {2e6 * c['wall'] / n:.0f} us of 2 cores' time)")
    for rate in args.rates:
        p = e2e[f"paced {rate:g}"]
        print(f"  paced at {p['offered']:,.0f} reports/s offered: {p['rate']:,.0f}/s committed ({p['committed']}/{p['sent']}), "
              f"publish->commit p50 {p['p50']:7.1f} ms  p99 {p['p99']:7.1f} ms")
    print(f"  simulator memory: {gen.hello['rss_per_device'] / 1024:.1f} KiB RSS per connected device "
          f"({gen.hello['devices']} devices; 10,000 -> {gen.hello['rss_per_device'] * 10_000 / 1024**3:.2f} GiB, limit 2 GiB)")
    print(f"  consumer: {e2e['consumer']}")


# -- in process (no broker) -------------------------------------------------------------


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
    """What ingestion does to a message before it queues it, alone: decode, validate, facts."""
    from fleetguard.telemetry._plan import message_facts
    from fleetguard.telemetry._wire import decode_ingest_message

    start = time.perf_counter()
    for p in payloads:
        message_facts(decode_ingest_message(p.data, p.content_type, MessageKind.TELEMETRY))
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


def sustained(service: IngestService, sink: Sink, payloads: list[Payload]) -> tuple[float, list[float], float]:
    """Reports/s, latencies, and the process's CPU seconds per report (decoding and writing:
    less sensitive than the rate to what else the machine runs)."""
    sink.take()
    before = service.stats().stored
    start = time.perf_counter()
    cpu = time.process_time()
    for p in payloads:
        service.submit(p.device, MessageKind.TELEMETRY, p.data, p.content_type, timeout=None)
    service.flush(timeout=600)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    stored = service.stats().stored - before
    assert stored == len(payloads), (stored, len(payloads))
    return len(payloads) / elapsed, sink.take(), cpu / len(payloads)


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




def bench_in_process(name: str, url: str, args: argparse.Namespace) -> None:
    db = open_database(url)
    upgrade_database(db)
    attach_audit_keys(db, MasterKey(os.urandom(32)))  # registering devices is audited
    devices = register(db, args.ip_devices)
    per_device = max(1, args.ip_reports // args.ip_devices)
    sink = Sink()
    tune_gc_for_service()
    handed: queue.Queue[object] = queue.Queue(maxsize=100_000)

    def detection(device_id: str, report: object) -> None:  # as a consumer would: enqueue
        with contextlib.suppress(queue.Full):
            handed.put_nowait(report)

    hooked: dict[str, Any] = {"on_report": detection} if args.report_hook else {}
    service = IngestService(db, sweep_every_s=None, compact_every_s=None, on_committed=sink.committed,
                            **hooked)
    service.start()
    # Every device reports once first: steady state (its row exists), not first sight.
    sustained(service, sink, make_payloads(devices, 1, 1))
    payloads = make_payloads(devices, per_device, 2)
    ceiling = decode_ceiling(payloads)
    rate, lat, cpu = sustained(service, sink, payloads)
    n_paced = int(args.rate * args.ip_seconds)
    paced_payloads = make_payloads(devices, max(1, n_paced // args.ip_devices), 2 + per_device)
    offered, plat = paced(service, sink, paced_payloads, args.rate)
    service.stop()
    size = statistics.mean(len(p.data) for p in payloads)
    hook = ", with a report hook (models kept, handed over)" if args.report_hook else ""
    print(f"\n[{name}, in process: submit() -> database{hook}] {len(payloads)} reports from {args.ip_devices} devices, mean {size:.0f} bytes (CBOR/JSON 3:1)")
    print(f"  decode, validate, facts alone (ceiling): {ceiling:10,.0f} reports/s")
    print(f"  ingested end to end (stored):     {rate:10,.0f} reports/s   ratio to ceiling {rate / ceiling:.2f}   "
          f"vs target 5,000: {rate / 5000:.2f}x")
    print(f"  CPU per report (process, all threads): {cpu * 1e6:8.1f} us")
    print(f"  saturated submit->commit latency: p50 {pct(lat, 0.5):7.1f} ms  p99 {pct(lat, 0.99):7.1f} ms (queue backlog)")
    print(f"  at {offered:,.0f} reports/s offered: p50 {pct(plat, 0.5):7.1f} ms  p99 {pct(plat, 0.99):7.1f} ms "
          f"({len(plat)} reports)")
    db.dispose()


def with_postgres(run: Any) -> None:
    name = f"fg_bench_{secrets.token_hex(4)}"
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"\n[PostgreSQL] skipped: not reachable ({str(exc).splitlines()[0]})")
        return
    try:
        run(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=TARGET, help="in-process paced rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[TARGET, 1000.0],
                        help="end-to-end paced rates (latency)")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--ip-devices", type=int, default=2000)
    parser.add_argument("--ip-reports", type=int, default=30_000)
    parser.add_argument("--ip-seconds", type=float, default=4)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--only", choices=["e2e", "inprocess", "all"], default="all")
    parser.add_argument("--loadgen", type=Path)
    parser.add_argument("--report-hook", action="store_true",
                        help="in process: ingest with an on_report hook that enqueues each report")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.loadgen:
        loadgen(args.loadgen)
        return
    print(f"bench_ingest: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    if args.db in ("sqlite", "both"):
        if args.only in ("e2e", "all"):
            with tempfile.TemporaryDirectory() as tmp:
                run_platform("SQLite (WAL)", f"sqlite:///{tmp}/data/fleetguard.db", args, Path(tmp))
        if args.only in ("inprocess", "all"):
            with tempfile.TemporaryDirectory() as tmp:
                bench_in_process("SQLite (WAL)", f"sqlite:///{tmp}/bench.db", args)
    if args.db in ("postgresql", "both"):
        if args.only in ("e2e", "all"):
            def e2e(url: str) -> None:
                with tempfile.TemporaryDirectory() as tmp:
                    run_platform("PostgreSQL", url, args, Path(tmp))
            with_postgres(e2e)
        if args.only in ("inprocess", "all"):
            with_postgres(lambda url: bench_in_process("PostgreSQL", url, args))


if __name__ == "__main__":
    main()
