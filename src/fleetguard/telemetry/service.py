"""Telemetry ingestion: decode and validate, queue, store in batches; reads and upkeep.

The write path:

    submit_*() (any thread)            one writer thread
    decode + validate (protocol)  ->   bounded queue  ->  a batch: up to ``max_batch``
    count rejections per device                          messages, lingering ``linger_s``
                                                         after the first; one transaction:
                                                         INSERT of report rows (duplicates
                                                         skipped by the key device, boot,
                                                         seq), UPDATE of touched devices,
                                                         rejection counts, registry
                                                         last-seen (once a minute a device)

What keeps the writer cheap (measured by ``benchmarks/bench_ingest.py``):

* planning (``_plan``) is plain Python over the validated messages, the statements go
  to the driver without SQLAlchemy's per-row parameter handling (``_store``), and a
  device's socket lists are written only when they differ from what its row holds;
* the *gate*: the writer holds it while it talks to the database, and decoding takes it
  too. The sqlite3 module releases the GIL around every row it steps through; a decoding
  thread that is busy would then keep the GIL for a switch interval (5 ms) each time, and
  a batch of 2,000 rows took seconds. Pausing decoding for the few milliseconds of a
  transaction costs little, since the two share one GIL anyway. SQLite only: on
  PostgreSQL a batch is a few statements, and while the writer waits on the server
  (GIL released) decoding goes on (end to end 7,272 -> 8,201-9,126 reports/s).

A full queue pushes back on the caller (``IngestOverloadedError``, or blocking for the
MQTT consumer) rather than dropping accepted data. ``on_stored`` tells a caller when its
message is settled in the database (the MQTT consumer acknowledges it to the broker only
then). A batch that the database refuses for a reason other than being unreachable is
retried one message per transaction, so one bad message never takes a batch down with
it; an unreachable database is retried with backoff, holding the batch.

The same thread runs the upkeep when it is due: :func:`sweep_offline` and
:func:`compact_telemetry`, so SQLite sees a single writer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, func, literal_column, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import now_ms, utcnow
from fleetguard.core.errors import DependencyError
from fleetguard.protocol import (
    ContentType,
    MessageKind,
    MessageRejectedError,
    RejectReason,
)
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.store.tables import (
    TelemetryDeviceRow,
    TelemetryRejectionRow,
    TelemetryReportRow,
    TelemetryRollupRow,
)
from fleetguard.telemetry._plan import (
    DeviceState,
    HeartbeatFacts,
    Item,
    ReportFacts,
    message_facts,
    plan_batch,
)
from fleetguard.telemetry._store import add_rejections, dialect_insert, load_states, write_plan
from fleetguard.telemetry._wire import decode_ingest_message
from fleetguard.telemetry.errors import IngestOverloadedError, IngestStoppedError
from fleetguard.telemetry.models import (
    METRIC_IDS,
    CompactionResult,
    DeviceTelemetryStatus,
    IngestStats,
    Metric,
    OfflinePolicy,
    RetentionPolicy,
    RollupPoint,
    Sample,
    Snapshot,
    SweepResult,
)

log = logging.getLogger("fleetguard.telemetry")

SYSTEM_ACTOR = "system:telemetry"
HOUR_MS = 3_600_000
_MAX_SEQ = 2**63 - 1
REGISTRY_SEEN_EVERY_S = 60.0  # the registry's last-seen is minute-grained
_STOP = object()
_FLUSH_MARK = object()
# Reasons ingestion adds to the protocol's, counted in the same table.
UNKNOWN_DEVICE = "unknown_device"

class Committed(NamedTuple):
    """One message as the commit hook sees it (``seq`` None: a heartbeat)."""

    device_id: str
    seq: int | None
    submitted: float  # time.perf_counter() at submit


CommittedHook = Callable[[Sequence[Committed]], None]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dt(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ip_address(address: str | None) -> str | None:
    """The address as the registry records it; None for anything that is not an IP."""
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:  # e.g. a test transport's "testclient"
        return None


def _canonical(device_id: str) -> str:
    if _CANONICAL_UUID.fullmatch(device_id):  # as str(UUID) writes it: the MQTT topics' form
        return device_id
    return str(uuid.UUID(device_id))


@dataclass(slots=True)
class _Notes:
    """What a batch writes besides its messages: refusals counted, devices heard from."""

    rejections: dict[tuple[str, str], tuple[int, datetime, datetime]] = field(
        default_factory=dict)
    seen: dict[str, str | None] = field(default_factory=dict)  # device -> address

    def __bool__(self) -> bool:
        return bool(self.rejections or self.seen)


class IngestService:
    """Accepts device messages from any thread; one writer thread stores them in batches.

    >>> service = IngestService(db)              # doctest: +SKIP
    >>> service.start()                          # or let the first submit start it
    >>> service.submit_telemetry(device_id, body, "application/cbor")
    >>> service.stop()                           # drains the queue, then returns
    """

    def __init__(
        self,
        db: Database,
        *,
        retention: RetentionPolicy | None = None,
        offline: OfflinePolicy | None = None,
        max_queue: int = 20_000,
        max_batch: int = 2_000,
        linger_s: float = 0.05,
        sweep_every_s: float | None = 15.0,
        compact_every_s: float | None = 3600.0,
        on_committed: CommittedHook | None = None,
        cache_devices: int = 200_000,
        exclusive_writer: bool = True,
    ) -> None:
        """``exclusive_writer``: False when other processes store telemetry into the same
        database (``serve --device-workers``): a device's next report may reach any of
        them, so each batch reads its devices' state afresh inside its transaction
        (locked until commit) instead of trusting what this process remembers."""
        self.db = db
        self._exclusive = exclusive_writer
        self.retention = retention or RetentionPolicy()
        self.offline = offline or OfflinePolicy()
        self._queue: queue.Queue[Item | object] = queue.Queue(maxsize=max_queue)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._sweep_every_s = sweep_every_s
        self._compact_every_s = compact_every_s
        self._on_committed = on_committed
        self._cache: dict[str, DeviceState] = {}
        self._cache_limit = cache_devices
        self._lock = threading.Lock()
        # Held by the writer while it talks to the database, and by decoding: see the
        # module docstring (SQLite only).
        self._gate = threading.Lock()
        self._write_gate: contextlib.AbstractContextManager[Any] = (
            self._gate if db.engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._progress = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._enqueued = 0
        self._finished = 0
        self._rejections: dict[tuple[str, str], tuple[int, datetime, datetime]] = {}
        self._counts = {"accepted": 0, "stored": 0, "duplicates": 0, "expired": 0,
                        "unknown": 0, "rejected": 0, "batches": 0, "write_errors": 0}
        self._seen_written: dict[str, float] = {}  # device -> monotonic time written
        self._address_written: dict[str, str] = {}  # device -> the address last written
        self._seen_notes: dict[str, str | None] = {}  # device -> address, for the next batch
        self._next_sweep = 0.0
        self._next_compact = time.monotonic() + 60.0

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            if self._stopping:
                raise IngestStoppedError("telemetry ingestion has stopped")
            self._thread = threading.Thread(
                target=self._run, name="fleetguard-telemetry-writer", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Store everything accepted so far, then end the writer thread."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.error("telemetry writer did not stop within %.0f s", timeout)

    def __enter__(self) -> IngestService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted (and every rejection counted) so far is stored."""
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self._enqueued
            rejections = bool(self._rejections or self._seen_notes)
            if rejections:
                self._enqueued += 1  # a marker: the writer counts it done with the flush
                target = self._enqueued
        if rejections:
            self._put(_FLUSH_MARK, None)
        with self._progress:
            while self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return self._finished >= target
                self._progress.wait(min(left, 0.5))
        return True

    def stats(self) -> IngestStats:
        with self._lock:
            c = dict(self._counts)
            queued = self._enqueued - self._finished
        return IngestStats(
            accepted=c["accepted"], stored=c["stored"], duplicates=c["duplicates"],
            dropped_expired=c["expired"], dropped_unknown_device=c["unknown"],
            rejected=c["rejected"], queued=queued, batches=c["batches"],
            write_errors=c["write_errors"],
        )

    # -- the way in -----------------------------------------------------------------

    def submit_telemetry(
        self, device_id: str, data: bytes, content_type: ContentType | str,
        *, timeout: float | None = 1.0,
    ) -> ReportFacts:
        facts = self.submit(device_id, MessageKind.TELEMETRY, data, content_type,
                            timeout=timeout)
        assert isinstance(facts, ReportFacts)
        return facts

    def submit_heartbeat(
        self, device_id: str, data: bytes, content_type: ContentType | str,
        *, timeout: float | None = 1.0,
    ) -> HeartbeatFacts:
        facts = self.submit(device_id, MessageKind.HEARTBEAT, data, content_type,
                            timeout=timeout)
        assert isinstance(facts, HeartbeatFacts)
        return facts

    def submit(
        self,
        device_id: str,
        kind: MessageKind,
        data: bytes,
        content_type: ContentType | str,
        *,
        timeout: float | None = 1.0,
        on_stored: Callable[[], None] | None = None,
    ) -> ReportFacts | HeartbeatFacts:
        """Decode, validate and queue one message of ``device_id`` (authenticated by the caller).

        Returns what will be stored of it. ``timeout`` bounds the wait for room in the
        queue (None: wait as long as it takes). ``on_stored`` is called by the writer
        thread once the message is settled in the database: its batch committed (stored,
        or found a duplicate, or dropped as too old or from an unknown device, or refused
        by the database and counted as a write error). It is not called for a message lost
        because the database stayed unreachable at shutdown. The MQTT consumer
        acknowledges a message to the broker from here.

        Raises:
            MessageRejectedError: the message was refused; the reason is counted.
            IngestOverloadedError: the queue stayed full for ``timeout``.
            IngestStoppedError: the service has stopped.
        """
        device_id = _canonical(device_id)
        submitted = time.perf_counter()
        if kind not in (MessageKind.TELEMETRY, MessageKind.HEARTBEAT):
            raise ValueError("ingestion takes telemetry and heartbeats")
        try:
            with self._gate:
                message = decode_ingest_message(data, content_type, kind)
            facts = message_facts(message)
            if isinstance(facts, ReportFacts) and facts.seq > _MAX_SEQ:
                raise MessageRejectedError(RejectReason.INVALID, "seq: beyond 2**63 - 1")
        except MessageRejectedError as exc:
            self.record_rejection(device_id, exc.reason)
            raise
        self._put(Item(device_id, facts, now_ms(), submitted, on_stored), timeout)
        return facts

    def record_rejection(self, device_id: str, reason: RejectReason | str) -> None:
        """Count a refused message of this device (stored with the next batch)."""
        now = utcnow()
        key = (_canonical(device_id), str(reason))
        with self._lock:
            n, first, _ = self._rejections.get(key, (0, now, now))
            self._rejections[key] = (n + 1, first, now)
            self._counts["rejected"] += 1

    def note_device_seen(self, device_id: str, address: str | None) -> None:
        """Record that the device was just heard from (at ``address``, if it is an IP).

        Never blocks: the note is written with the next batch, as the registry's last-seen
        is for telemetry, and at most once a granularity per device (or when the address
        is new), so a device's every request costs no write. After ``stop`` it is ignored.
        """
        device_id = _canonical(device_id)
        ip = _ip_address(address)
        limit = time.monotonic() - REGISTRY_SEEN_EVERY_S
        stale = self._seen_written.get(device_id, -1e18) < limit
        if not stale and (ip is None or self._address_written.get(device_id) == ip):
            return
        with self._lock:
            if self._stopping:
                return
            self._seen_notes[device_id] = ip or self._seen_notes.get(device_id)
        self.start()

    def _put(self, item: Item | object, timeout: float | None) -> None:
        self.start()
        with self._lock:
            if self._stopping:
                raise IngestStoppedError("telemetry ingestion has stopped")
        try:
            self._queue.put(item, timeout=timeout)
        except queue.Full:
            raise IngestOverloadedError(
                "telemetry ingestion is busy; retry later", retry_after=1.0
            ) from None
        if item is not _FLUSH_MARK:
            with self._lock:
                self._enqueued += 1
                self._counts["accepted"] += 1

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            items, marks, stop = self._drain()
            settled = False
            try:
                settled = self._write(items)
            except Exception:  # never let the writer die; the batch was logged
                log.exception("telemetry batch failed")
            if settled:
                self._settle(items)
            with self._progress:
                self._finished += len(items) + marks
                self._progress.notify_all()
            if stop:
                return
            self._upkeep()

    def _settle(self, items: list[Item]) -> None:
        for item in items:
            if item.on_stored is not None:
                try:
                    item.on_stored()
                except Exception:  # a hook must not stop the writer
                    log.exception("telemetry on_stored hook failed")

    def _drain(self) -> tuple[list[Item], int, bool]:
        items: list[Item] = []
        marks = 0
        try:
            first = self._queue.get(timeout=self._linger_s * 10)
        except queue.Empty:
            return items, marks, False
        pending: list[object] = [first]
        # Linger: a batch fills for up to linger_s after its first message, so a busy
        # writer commits a few large batches rather than many small ones.
        deadline = time.monotonic() + self._linger_s
        while len(pending) < self._max_batch and pending[-1] is not _STOP:
            try:
                pending.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                pending.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        stop = False
        for entry in pending:
            if entry is _STOP:
                stop = True
            elif entry is _FLUSH_MARK:
                marks += 1
            elif isinstance(entry, Item):
                items.append(entry)
        if stop:  # store whatever is still queued before leaving
            while True:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(entry, Item):
                    items.append(entry)
                elif entry is _FLUSH_MARK:
                    marks += 1
        return items, marks, stop

    def _take_notes(self) -> _Notes:
        with self._lock:
            notes = _Notes(self._rejections, self._seen_notes)
            self._rejections, self._seen_notes = {}, {}
        return notes

    def _write(self, items: list[Item]) -> bool:
        """Store a batch; False only when it was given up (database gone at shutdown)."""
        notes = self._take_notes()
        if not items and not notes:
            return True
        delay = 0.25
        while True:
            try:
                self._write_once(items, notes)
                return True
            except (OperationalError, DependencyError) as exc:
                if self._stopping and delay > 8:
                    log.error("database unreachable at shutdown; %d messages not stored "
                              "(not acknowledged either)", len(items))
                    return False
                log.warning("database unavailable, retrying the batch in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            except SQLAlchemyError:
                log.exception("telemetry batch refused; storing its messages one by one")
                break
        self._write_one_by_one(items, notes)
        return True

    def _write_one_by_one(self, items: list[Item], notes: _Notes) -> None:
        try:
            self._write_once([], notes)
        except SQLAlchemyError:
            log.exception("could not store rejection counts and last-seen notes")
        for item in items:
            try:
                self._write_once([item], _Notes())
            except SQLAlchemyError:
                log.exception("dropped one message of device %s that the database refused",
                              item.device_id)
                with self._lock:
                    self._counts["write_errors"] += 1

    def _write_once(self, items: list[Item], notes: _Notes) -> None:
        now_ms = _ms(utcnow())
        default_ms = int(self.offline.default_interval.total_seconds() * 1000)
        rejections = dict(notes.rejections)  # a retry starts again from the batch's own
        with self._write_gate, self.db.session() as session:
            cache = self._cache if self._exclusive else {}
            known = {i.device_id: cache[i.device_id] for i in items if i.device_id in cache}
            missing = {i.device_id for i in items} - known.keys()
            unknown: set[str] = set()
            if missing:
                loaded, unknown = load_states(session, missing, now_ms=now_ms,
                                              default_interval_ms=default_ms,
                                              lock=not self._exclusive)
                known.update(loaded)
            usable = [i for i in items if i.device_id not in unknown]
            for device_id in unknown:
                log.warning("telemetry for a device the registry does not know: %s", device_id)
            dropped = len(items) - len(usable)
            if dropped:
                for i in items:
                    if i.device_id in unknown:
                        key = (i.device_id, UNKNOWN_DEVICE)
                        n, first, _ = rejections.get(key, (0, utcnow(), utcnow()))
                        rejections[key] = (n + 1, first, utcnow())
            plan = plan_batch(usable, known, self.retention, self.offline)
            inserted = write_plan(session, plan)
            add_rejections(session, rejections)
            seen = self._registry_seen_due(plan.states)
            addressed = {d: ip for d, ip in notes.seen.items() if ip is not None}
            plain = (set(seen) | notes.seen.keys()) - addressed.keys()
            if plain:
                registry.record_devices_seen(session, plain)
            for device_id in sorted(registry.registered_device_ids(session, addressed)):
                registry.record_device_seen(session, device_id, addressed[device_id])
        # Committed: only now does the cache (and the last-seen memo) learn the new states.
        stamp = time.monotonic()
        if len(self._seen_written) > self._cache_limit:
            self._seen_written.clear()
            self._address_written.clear()
        self._seen_written.update(dict.fromkeys([*plain, *addressed], stamp))
        self._address_written.update(addressed)
        if len(self._cache) + len(plan.states) > self._cache_limit:
            self._cache.clear()
        self._cache.update(plan.states)
        attempted = len(plan.report_rows)
        late_dups = attempted - inserted if inserted >= 0 else 0
        with self._lock:
            c = self._counts
            c["batches"] += 1
            c["stored"] += attempted - late_dups
            c["duplicates"] += plan.duplicates + late_dups
            c["expired"] += plan.expired
            c["unknown"] += dropped
        if self._on_committed is not None and items:
            self._on_committed([
                Committed(i.device_id, getattr(i.message, "seq", None), i.submitted)
                for i in items
            ])

    def _registry_seen_due(self, states: dict[str, DeviceState]) -> list[str]:
        """Devices whose registry last-seen this process has not written for a minute."""
        limit = time.monotonic() - REGISTRY_SEEN_EVERY_S
        written = self._seen_written
        return [d for d in states if written.get(d, -1e18) < limit]

    def _upkeep(self) -> None:
        now = time.monotonic()
        if self._sweep_every_s is not None and now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every_s
            try:
                with self.db.session() as session:
                    sweep_offline(session, utcnow(), self.offline)
            except Exception:
                log.exception("offline sweep failed")
        if self._compact_every_s is not None and now >= self._next_compact:
            self._next_compact = now + self._compact_every_s
            try:
                with self.db.session() as session:
                    result = compact_telemetry(session, utcnow(), self.retention)
                log.info("telemetry compaction: %d rollups, %d raw rows deleted",
                         result.rollups_written, result.raw_deleted)
            except Exception:
                log.exception("telemetry compaction failed")



# -- offline detection ----------------------------------------------------------------


def sweep_offline(
    session: Session, now: datetime, policy: OfflinePolicy | None = None
) -> SweepResult:
    """Flip devices silent for ``missed`` intervals to offline, and back; audit each flip once."""
    policy = policy or OfflinePolicy()
    now_ms = _ms(now)
    t = TelemetryDeviceRow
    deadline = t.last_seen_ms + policy.missed * t.interval_ms
    offline = session.execute(
        update(t).where(t.online.is_(True), deadline < now_ms)
        .values(online=False, online_changed_ms=now_ms)
        .returning(t.device_id, t.last_seen_ms, t.interval_ms)
        .execution_options(synchronize_session=False)
    ).all()
    online = session.execute(
        update(t).where(t.online.is_(False), deadline >= now_ms)
        .values(online=True, online_changed_ms=now_ms)
        .returning(t.device_id, t.last_seen_ms, t.interval_ms)
        .execution_options(synchronize_session=False)
    ).all()
    for rows, action in ((offline, "device.offline"), (online, "device.online")):
        for device_id, last_seen_ms, interval_ms in sorted(rows):
            append_audit_entry(
                session, actor=SYSTEM_ACTOR, action=action, target=f"device:{device_id}",
                details={"last_seen": _dt(last_seen_ms).isoformat(),
                         "interval_s": interval_ms / 1000, "missed": policy.missed},
            )
    return SweepResult(went_offline=sorted(r[0] for r in offline),
                       came_online=sorted(r[0] for r in online))


# -- retention and downsampling ---------------------------------------------------------

_METRIC_COLUMNS = {metric: getattr(TelemetryReportRow, metric.value) for metric in Metric}


def compact_telemetry(
    session: Session, now: datetime, policy: RetentionPolicy | None = None, *,
    chunk: int = 500,
) -> CompactionResult:
    """Roll raw reports older than ``policy.raw`` up into hours, delete them, expire rollups.

    The cut-off is a whole hour, so an hour is rolled up once and completely (ingestion
    drops reports older than ``policy.raw``, so none arrives for an hour already done).
    """
    policy = policy or RetentionPolicy()
    cutoff = (_ms(now - policy.raw) // HOUR_MS) * HOUR_MS
    rollup_cutoff = _ms(now - policy.rollups)
    keys = list(session.execute(select(TelemetryDeviceRow.key).order_by(TelemetryDeviceRow.key))
                .scalars())
    r, u = TelemetryReportRow, TelemetryRollupRow
    written = deleted = expired = 0
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    least = func.least if postgres else func.min
    greatest = func.greatest if postgres else func.max
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        for metric, column in _METRIC_COLUMNS.items():
            hour = (r.ts // HOUR_MS) * HOUR_MS
            source = (
                select(r.device_key, literal_column(str(METRIC_IDS[metric])), hour,
                       func.count(column), func.min(column), func.max(column),
                       func.avg(column))
                .where(r.device_key.in_(part), r.ts < cutoff, column.is_not(None))
                .group_by(r.device_key, hour)
            )
            stmt = dialect_insert(conn, u.__table__).from_select(  # type: ignore[arg-type]
                ["device_key", "metric", "hour_ms", "samples", "min_value", "max_value",
                 "avg_value"], source,
            )
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=["device_key", "metric", "hour_ms"],
                set_={
                    "samples": u.samples + ex.samples,
                    "min_value": least(u.min_value, ex.min_value),
                    "max_value": greatest(u.max_value, ex.max_value),
                    "avg_value": (u.avg_value * u.samples + ex.avg_value * ex.samples)
                    / (u.samples + ex.samples),
                },
            )
            written += max(conn.execute(stmt).rowcount, 0)
        deleted += max(conn.execute(
            delete(r).where(r.device_key.in_(part), r.ts < cutoff)
        ).rowcount, 0)
        expired += max(conn.execute(
            delete(u).where(u.device_key.in_(part), u.hour_ms < rollup_cutoff)
        ).rowcount, 0)
    return CompactionResult(raw_cutoff=_dt(cutoff), rollups_written=written,
                            raw_deleted=deleted, rollups_deleted=expired)


# -- reads ------------------------------------------------------------------------------


def _key_of(session: Session, device_id: str) -> int | None:
    try:
        canonical = _canonical(device_id)
    except ValueError:
        return None
    key: int | None = session.execute(
        select(TelemetryDeviceRow.key).where(TelemetryDeviceRow.device_id == canonical)
    ).scalar_one_or_none()
    return key


def read_series(
    session: Session, device_id: str, metric: Metric, *,
    since: datetime, until: datetime | None = None,
) -> list[Sample]:
    """Raw samples of one metric, oldest first (reports where it was unknown are left out)."""
    key = _key_of(session, device_id)
    if key is None:
        return []
    column = _METRIC_COLUMNS[Metric(metric)]
    r = TelemetryReportRow
    query = select(r.ts, column).where(r.device_key == key, r.ts >= _ms(since),
                                       column.is_not(None))
    if until is not None:
        query = query.where(r.ts < _ms(until))
    return [Sample(_dt(ts), float(v)) for ts, v in session.execute(query.order_by(r.ts, r.seq))]


def read_rollups(
    session: Session, device_id: str, metric: Metric, *,
    since: datetime, until: datetime | None = None,
) -> list[RollupPoint]:
    key = _key_of(session, device_id)
    if key is None:
        return []
    u = TelemetryRollupRow
    query = select(u).where(u.device_key == key, u.metric == METRIC_IDS[Metric(metric)],
                            u.hour_ms >= _ms(since))
    if until is not None:
        query = query.where(u.hour_ms < _ms(until))
    return [RollupPoint(_dt(row.hour_ms), row.samples, row.min_value, row.max_value,
                        row.avg_value)
            for row in session.execute(query.order_by(u.hour_ms)).scalars()]


def device_status(session: Session, device_id: str) -> DeviceTelemetryStatus | None:
    """Online state and delivery bookkeeping; None for a device that never reported."""
    row = _device_row(session, device_id)
    if row is None:
        return None
    return DeviceTelemetryStatus(
        device_id=row.device_id, online=row.online,
        online_changed_at=_dt(row.online_changed_ms), last_seen_at=_dt(row.last_seen_ms),
        last_report_at=_dt(row.last_report_ms) if row.last_report_ms is not None else None,
        interval=timedelta(milliseconds=row.interval_ms), boot_id=row.boot_id,
        last_seq=row.last_seq, agent_version=row.agent_version,
    )


def latest_snapshot(session: Session, device_id: str) -> Snapshot | None:
    row = _device_row(session, device_id)
    if row is None:
        return None
    return Snapshot(
        at=_dt(row.snapshot_ms) if row.snapshot_ms is not None else None,
        listening=json.loads(row.listening), connections=json.loads(row.connections),
        new_executables=json.loads(row.new_executables),
    )


def _device_row(session: Session, device_id: str) -> TelemetryDeviceRow | None:
    try:
        canonical = _canonical(device_id)
    except ValueError:
        return None
    return session.execute(
        select(TelemetryDeviceRow).where(TelemetryDeviceRow.device_id == canonical)
    ).scalar_one_or_none()


def rejection_counts(
    session: Session, device_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Refused messages as ``{device_id: {reason: count}}``."""
    query = select(TelemetryRejectionRow.device_id, TelemetryRejectionRow.reason,
                   TelemetryRejectionRow.count)
    if device_id is not None:
        query = query.where(TelemetryRejectionRow.device_id == _canonical(device_id))
    out: dict[str, dict[str, int]] = {}
    for dev, reason, count in session.execute(query):
        out.setdefault(dev, {})[reason] = int(count)
    return out


def count_reporting_devices(session: Session, *, online: bool) -> int:
    """How many reporting devices are recorded online (or offline): counted in the database."""
    return int(session.execute(
        select(func.count()).select_from(TelemetryDeviceRow)
        .where(TelemetryDeviceRow.online.is_(online))
    ).scalar_one())


def reporting_device_ids(session: Session, *, online: bool) -> frozenset[str]:
    """The reporting devices recorded online (or offline), for the device list's filter."""
    return frozenset(session.execute(
        select(TelemetryDeviceRow.device_id).where(TelemetryDeviceRow.online.is_(online))
    ).scalars())


__all__ = [
    "SYSTEM_ACTOR",
    "UNKNOWN_DEVICE",
    "IngestService",
    "compact_telemetry",
    "count_reporting_devices",
    "device_status",
    "latest_snapshot",
    "read_rollups",
    "read_series",
    "rejection_counts",
    "reporting_device_ids",
    "sweep_offline",
]
