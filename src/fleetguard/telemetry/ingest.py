"""Telemetry ingestion: decode and validate, queue, store in batches from one writer thread.

The write path:

    submit_*() (any thread)            one writer thread
    decode + validate (protocol)  ->   bounded queue  ->  a batch: up to ``max_batch``
    count rejections per device                          messages, lingering ``linger_s``
    note devices heard from                              after the first; stored in one
                                                         transaction (``_batch``)

Every message a device sends the platform goes this way, whatever its transport:
telemetry, heartbeats and command results; so does the registry's last-seen of a device
(:meth:`IngestService.note_device_seen`), which nothing else writes.

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

``on_report`` hands each newly stored report, validated (``protocol.TelemetryReport``),
to a consumer such as detection, after its batch committed. Only then is the report's
model kept in the queue (otherwise ingestion keeps only its compact ``ReportFacts``).

A full queue pushes back on the caller (``IngestOverloadedError``, or blocking for the
MQTT consumer) rather than dropping accepted data. ``on_stored`` tells a caller when its
message is settled in the database (the MQTT consumer acknowledges it to the broker only
then).

The same thread runs the upkeep when it is due (``upkeep``: :func:`sweep_offline` and
:func:`compact_telemetry`), so SQLite sees a single writer.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from fleetguard.core.clock import now_ms, utcnow
from fleetguard.protocol import (
    CommandResult,
    ContentType,
    MessageKind,
    MessageRejectedError,
    RejectReason,
    TelemetryReport,
    decode_message,
)
from fleetguard.store import Database
from fleetguard.telemetry._batch import (
    BatchWriter,
    CommandAnswer,
    CommittedHook,
    Counters,
    Entry,
    Notes,
    ReportHook,
    count_rejection,
    fail_unsettled,
)
from fleetguard.telemetry._ids import canonical_device_id, ip_address_or_none
from fleetguard.telemetry._plan import HeartbeatFacts, Item, ReportFacts, message_facts
from fleetguard.telemetry._wire import decode_ingest_message
from fleetguard.telemetry.errors import IngestOverloadedError, IngestStoppedError
from fleetguard.telemetry.models import (
    IngestStats,
    OfflinePolicy,
    QueuedCommand,
    RetentionPolicy,
)
from fleetguard.telemetry.upkeep import compact_telemetry, sweep_offline

log = logging.getLogger("fleetguard.telemetry")

_MAX_SEQ = 2**63 - 1
_STOP = object()
_FLUSH_MARK = object()


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
        on_report: ReportHook | None = None,
    ) -> None:
        """``exclusive_writer``: False when other processes store telemetry into the same
        database (``serve --device-workers``): a device's next report may reach any of
        them, so each batch reads its devices' state afresh inside its transaction
        (locked until commit) instead of trusting what this process remembers.

        ``on_report(device_id, report)``: called by the writer thread once per report
        newly stored, after the batch holding it committed, in the order the reports were
        submitted; not for duplicates, reports of unknown devices, expired ones, nor ones
        the database refused. It must not block, since every device's telemetry waits
        while it runs: it should put the report on a bounded queue of its own and return
        (dropping, and counting, when that queue is full). What it raises is logged and
        counted (``IngestStats.report_hook_errors``); the writer goes on."""
        self.db = db
        self.retention = retention or RetentionPolicy()
        self.offline = offline or OfflinePolicy()
        self._queue: queue.Queue[Entry | object] = queue.Queue(maxsize=max_queue)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._sweep_every_s = sweep_every_s
        self._compact_every_s = compact_every_s
        self._lock = threading.Lock()
        # Held by the writer while it talks to the database, and by decoding: see the
        # module docstring (SQLite only).
        self._gate = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._enqueued = 0
        self._finished = 0
        self._notes = Notes()
        self._counters = Counters()
        self._keep_reports = on_report is not None
        write_gate: contextlib.AbstractContextManager[Any] = (
            self._gate if db.engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._writer = BatchWriter(
            db, self._counters, retention=self.retention, offline=self.offline,
            exclusive=exclusive_writer, cache_limit=cache_devices, on_committed=on_committed,
            stopping=lambda: self._stopping, write_gate=write_gate, on_report=on_report,
        )
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
        """Wait until everything submitted (and every rejection and note) so far is stored."""
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self._enqueued
            noted = bool(self._notes)
            if noted:
                self._enqueued += 1  # a marker: the writer counts it done with the flush
                target = self._enqueued
        if noted:
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
            queued = self._enqueued - self._finished
        return self._counters.stats(queued)

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
        device_id = canonical_device_id(device_id)
        submitted = time.perf_counter()
        if kind not in (MessageKind.TELEMETRY, MessageKind.HEARTBEAT):
            raise ValueError("submit takes telemetry and heartbeats")
        try:
            with self._gate:
                message = decode_ingest_message(data, content_type, kind)
            facts = message_facts(message)
            if isinstance(facts, ReportFacts) and facts.seq > _MAX_SEQ:
                raise MessageRejectedError(RejectReason.INVALID, "seq: beyond 2**63 - 1")
            report = None
            if self._keep_reports and isinstance(facts, ReportFacts):
                report = _report_model(message, data, content_type)
        except MessageRejectedError as exc:
            self.record_rejection(device_id, exc.reason)
            raise
        self._put(Item(device_id, facts, now_ms(), submitted, on_stored, report), timeout)
        return facts

    def submit_command_result(
        self, device_id: str, data: bytes, content_type: ContentType | str,
        *, timeout: float | None = 1.0, on_stored: Callable[[], None] | None = None,
    ) -> Future[QueuedCommand]:
        """Decode, validate and queue a device's result for one of its commands.

        The future resolves once its batch is settled: to the command as stored, or to
        the refusal (``CommandNotFoundError``: not a command of this device;
        ``CommandFinishedError``: it already has another result), which is counted as a
        rejection of the device like a malformed message. ``on_stored`` as for
        :meth:`submit`. Raises as :meth:`submit` does.
        """
        device_id = canonical_device_id(device_id)
        submitted = time.perf_counter()
        try:
            with self._gate:
                result = decode_message(data, content_type, expect=MessageKind.COMMAND_RESULT)
        except MessageRejectedError as exc:
            self.record_rejection(device_id, exc.reason)
            raise
        assert isinstance(result, CommandResult)
        answer = CommandAnswer(device_id, result, submitted, on_stored)
        self._put(answer, timeout)
        return answer.outcome

    def record_rejection(self, device_id: str, reason: RejectReason | str) -> None:
        """Count a refused message of this device (stored with the next batch)."""
        with self._lock:
            count_rejection(self._notes.rejections, canonical_device_id(device_id), str(reason))
        self._counters.add(rejected=1)

    def note_device_seen(self, device_id: str, address: str | None) -> None:
        """Record that the device was just heard from (at ``address``, if it is an IP).

        The only way the registry's last-seen and addresses of a device are written. Never
        blocks: the note is written with the next batch, and only when this process has
        not written the device for a minute or the address is new, so a device's every
        request costs no write. After ``stop`` it is ignored.
        """
        device_id = canonical_device_id(device_id)
        ip = ip_address_or_none(address)
        if not self._writer.seen_due(device_id, ip):
            return
        with self._lock:
            if self._stopping:
                return
            self._notes.seen[device_id] = ip or self._notes.seen.get(device_id)
        self.start()

    def _put(self, entry: Entry | object, timeout: float | None) -> None:
        self.start()
        with self._lock:
            if self._stopping:
                raise IngestStoppedError("telemetry ingestion has stopped")
        try:
            self._queue.put(entry, timeout=timeout)
        except queue.Full:
            raise IngestOverloadedError(
                "telemetry ingestion is busy; retry later", retry_after=1.0
            ) from None
        if entry is not _FLUSH_MARK:
            with self._lock:
                self._enqueued += 1
            self._counters.add(accepted=1)

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            entries, marks, stop = self._drain()
            settled = False
            try:
                settled = self._writer.write(entries, self._take_notes())
            except Exception:  # never let the writer die; the batch was logged
                log.exception("telemetry batch failed")
            if settled:
                self._settle(entries)
            fail_unsettled(entries, "the command result could not be stored")
            with self._progress:
                self._finished += len(entries) + marks
                self._progress.notify_all()
            if stop:
                return
            self._upkeep()

    def _take_notes(self) -> Notes:
        with self._lock:
            notes, self._notes = self._notes, Notes()
        return notes

    def _settle(self, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.on_stored is not None:
                try:
                    entry.on_stored()
                except Exception:  # a hook must not stop the writer
                    log.exception("telemetry on_stored hook failed")

    def _drain(self) -> tuple[list[Entry], int, bool]:
        """The next batch: its messages, how many flush marks it holds, and whether to stop."""
        try:
            first = self._queue.get(timeout=self._linger_s * 10)
        except queue.Empty:
            return [], 0, False
        pending = self._linger([first])
        if pending[-1] is _STOP:  # store whatever is still queued before leaving
            pending += self._rest()
        entries = [e for e in pending if isinstance(e, (Item, CommandAnswer))]
        marks = sum(1 for e in pending if e is _FLUSH_MARK)
        return entries, marks, any(e is _STOP for e in pending)

    def _linger(self, pending: list[object]) -> list[object]:
        """A batch fills for up to linger_s after its first message, so a busy writer
        commits a few large batches rather than many small ones."""
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
        return pending

    def _rest(self) -> list[object]:
        rest: list[object] = []
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                return rest

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


def _report_model(
    message: object, data: bytes, content_type: ContentType | str
) -> TelemetryReport:
    """The protocol's model of a decoded report (ingestion decodes into msgspec structs).

    Validated from the struct's attributes (about 20 us for a small report); should the
    model refuse what the struct took, the protocol's decoder decides, and says why.
    """
    if isinstance(message, TelemetryReport):
        return message
    try:
        return TelemetryReport.model_validate(message, from_attributes=True)
    except ValueError:  # pydantic's ValidationError
        model = decode_message(data, content_type, expect=MessageKind.TELEMETRY)
        assert isinstance(model, TelemetryReport)
        return model


__all__ = ["IngestService"]
