"""One batch of the ingest service's writer thread, stored in one transaction.

A batch is the accepted messages (telemetry, heartbeats, command results) and the notes
gathered since the last one (refusals counted, devices heard from). One transaction:
INSERT of report rows (duplicates skipped by the key device, boot, seq), UPDATE of the
touched devices, command results, refusal counts, and the registry's last-seen and
addresses (once a minute a device, or when its address is new).

A batch that the database refuses for a reason other than being unreachable is retried
one message per transaction, so one bad message never takes a batch down with it; an
unreachable database is retried with backoff, holding the batch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.core.errors import DependencyError, FleetError
from fleetguard.protocol import CommandResult, TelemetryReport, to_millis
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.telemetry._plan import DeviceState, Item, Plan, ReportFacts, plan_batch
from fleetguard.telemetry._store import add_rejections, load_states, write_plan
from fleetguard.telemetry.commands import record_command_result
from fleetguard.telemetry.errors import IngestStoppedError
from fleetguard.telemetry.models import (
    IngestStats,
    OfflinePolicy,
    QueuedCommand,
    RetentionPolicy,
)

log = logging.getLogger("fleetguard.telemetry")

REGISTRY_SEEN_EVERY_S = 60.0  # the registry's last-seen is minute-grained
# Reasons ingestion adds to the protocol's, counted in the same table.
UNKNOWN_DEVICE = "unknown_device"

# (device, reason) -> how many, first at, last at
Rejections = dict[tuple[str, str], tuple[int, datetime, datetime]]


class Committed(NamedTuple):
    """One message as the commit hook sees it (``seq`` None: a heartbeat or command result)."""

    device_id: str
    seq: int | None
    submitted: float  # time.perf_counter() at submit


CommittedHook = Callable[[Sequence[Committed]], None]
ReportHook = Callable[[str, TelemetryReport], None]
"""Called with (device id, the validated report) once per newly stored report, from the
writer thread after its batch committed. It must not block: it holds up every device's
telemetry while it runs (hand the report to a bounded queue of your own and return)."""


@dataclass(slots=True)
class CommandAnswer:
    """A device's result for one of its commands, queued like telemetry; ``outcome`` is
    resolved once the batch is settled (the stored command, or why it was refused)."""

    device_id: str
    result: CommandResult
    submitted: float
    on_stored: Callable[[], None] | None = None
    outcome: Future[QueuedCommand] = field(default_factory=Future)


Entry = Item | CommandAnswer


@dataclass(slots=True)
class Notes:
    """What a batch writes besides its messages: refusals counted, devices heard from."""

    rejections: Rejections = field(default_factory=dict)
    seen: dict[str, str | None] = field(default_factory=dict)  # device -> IP address

    def __bool__(self) -> bool:
        return bool(self.rejections or self.seen)


def count_rejection(rejections: Rejections, device_id: str, reason: str) -> None:
    now = utcnow()
    n, first, _ = rejections.get((device_id, reason), (0, now, now))
    rejections[(device_id, reason)] = (n + 1, first, now)


class Counters:
    """The ingest service's counters, shared by the submitting threads and the writer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c = dict.fromkeys(("accepted", "stored", "duplicates", "expired", "unknown",
                                 "rejected", "batches", "write_errors", "hook_errors"), 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, n in deltas.items():
                self._c[name] += n

    def stats(self, queued: int) -> IngestStats:
        with self._lock:
            c = dict(self._c)
        return IngestStats(
            accepted=c["accepted"], stored=c["stored"], duplicates=c["duplicates"],
            dropped_expired=c["expired"], dropped_unknown_device=c["unknown"],
            rejected=c["rejected"], queued=queued, batches=c["batches"],
            write_errors=c["write_errors"], report_hook_errors=c["hook_errors"],
        )


@dataclass(slots=True)
class _Outcome:
    """What one transaction did, applied to memory only once it committed."""

    plan: Plan
    inserted: int
    already_stored: set[int]  # indices of report rows found stored before
    dropped: int
    seen: list[str]
    addresses: dict[str, str]
    answers: list[tuple[CommandAnswer, QueuedCommand | FleetError]]


class BatchWriter:
    """Stores batches for the writer thread; remembers device states between them."""

    def __init__(
        self, db: Database, counters: Counters, *, retention: RetentionPolicy,
        offline: OfflinePolicy, exclusive: bool, cache_limit: int,
        on_committed: CommittedHook | None, stopping: Callable[[], bool],
        write_gate: contextlib.AbstractContextManager[Any], on_report: ReportHook | None = None,
    ) -> None:
        self.db = db
        self.retention = retention
        self.offline = offline
        self._counters = counters
        self._exclusive = exclusive
        self._cache: dict[str, DeviceState] = {}
        self._cache_limit = cache_limit
        self._on_committed = on_committed
        self._on_report = on_report
        self._stopping = stopping
        self._write_gate = write_gate
        self._seen_written: dict[str, float] = {}  # device -> monotonic time written
        self._address_written: dict[str, str] = {}  # device -> the address last written

    def seen_due(self, device_id: str, address: str | None) -> bool:
        """Whether a note that the device was heard from (at ``address``) needs a write."""
        limit = time.monotonic() - REGISTRY_SEEN_EVERY_S
        if self._seen_written.get(device_id, -1e18) < limit:
            return True
        return address is not None and self._address_written.get(device_id) != address

    def write(self, entries: list[Entry], notes: Notes) -> bool:
        """Store a batch; False only when it was given up (database gone at shutdown)."""
        if not entries and not notes:
            return True
        delay = 0.25
        while True:
            try:
                self._write_once(entries, notes)
                return True
            except (OperationalError, DependencyError) as exc:
                if self._stopping() and delay > 8:
                    log.error("database unreachable at shutdown; %d messages not stored "
                              "(not acknowledged either)", len(entries))
                    return False
                log.warning("database unavailable, retrying the batch in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            except SQLAlchemyError:
                log.exception("telemetry batch refused; storing its messages one by one")
                break
        self._write_one_by_one(entries, notes)
        return True

    def _write_one_by_one(self, entries: list[Entry], notes: Notes) -> None:
        try:
            self._write_once([], notes)
        except SQLAlchemyError:
            log.exception("could not store rejection counts and last-seen notes")
        for entry in entries:
            try:
                self._write_once([entry], Notes())
            except SQLAlchemyError:
                log.exception("dropped one message of device %s that the database refused",
                              entry.device_id)
                self._counters.add(write_errors=1)
                if isinstance(entry, CommandAnswer):
                    entry.outcome.set_exception(
                        DependencyError("the database refused this command result"))

    def _write_once(self, entries: list[Entry], notes: Notes) -> None:
        items = [e for e in entries if isinstance(e, Item)]
        answers = [e for e in entries if isinstance(e, CommandAnswer)]
        rejections = dict(notes.rejections)  # a retry starts again from the batch's own
        with self._write_gate, self.db.session() as session:
            plan, dropped = self._plan(session, items, rejections)
            inserted, already = write_plan(session, plan)
            stored = _record_answers(session, answers, rejections)
            add_rejections(session, rejections)
            heard = [*plan.states, *(a.device_id for a in answers)]
            seen, addresses = self._record_seen(session, heard, notes)
        self._committed(
            _Outcome(plan, inserted, already, dropped, seen, addresses, stored), entries)

    def _plan(
        self, session: Session, items: list[Item], rejections: Rejections
    ) -> tuple[Plan, int]:
        """The batch's rows, from the device states this process holds or loads (and
        locks, when other processes write too); a device the registry lacks is dropped."""
        cache = self._cache if self._exclusive else {}
        known = {i.device_id: cache[i.device_id] for i in items if i.device_id in cache}
        missing = {i.device_id for i in items} - known.keys()
        unknown: set[str] = set()
        if missing:
            default_ms = int(self.offline.default_interval.total_seconds() * 1000)
            loaded, unknown = load_states(session, missing, now_ms=to_millis(utcnow()),
                                          default_interval_ms=default_ms,
                                          lock=not self._exclusive)
            known.update(loaded)
        for device_id in unknown:
            log.warning("telemetry for a device the registry does not know: %s", device_id)
        usable = [i for i in items if i.device_id not in unknown]
        for item in items:
            if item.device_id in unknown:
                count_rejection(rejections, item.device_id, UNKNOWN_DEVICE)
        plan = plan_batch(usable, known, self.retention, self.offline)
        return plan, len(items) - len(usable)

    def _record_seen(
        self, session: Session, heard: list[str], notes: Notes
    ) -> tuple[list[str], dict[str, str]]:
        """The registry's last-seen of the devices heard from (their messages in this batch,
        and the notes), and their new addresses."""
        limit = time.monotonic() - REGISTRY_SEEN_EVERY_S
        due = {d for d in heard if self._seen_written.get(d, -1e18) < limit}
        addresses = {d: ip for d, ip in notes.seen.items() if ip is not None}
        plain = sorted((due | notes.seen.keys()) - addresses.keys())
        if plain or addresses:
            registry.record_devices_seen(session, plain, addresses=addresses)
        return [*plain, *addresses], addresses

    def _committed(self, done: _Outcome, entries: list[Entry]) -> None:
        """Only now does memory (state cache, last-seen memo, counters) learn the batch."""
        stamp = time.monotonic()
        if len(self._seen_written) > self._cache_limit:
            self._seen_written.clear()
            self._address_written.clear()
        self._seen_written.update(dict.fromkeys(done.seen, stamp))
        self._address_written.update(done.addresses)
        plan = done.plan
        if len(self._cache) + len(plan.states) > self._cache_limit:
            self._cache.clear()
        self._cache.update(plan.states)
        attempted = len(plan.report_rows)
        late_dups = attempted - done.inserted if done.inserted >= 0 else 0
        refused = 0
        for answer, outcome in done.answers:
            if isinstance(outcome, FleetError):
                refused += 1
                answer.outcome.set_exception(outcome)
            else:
                answer.outcome.set_result(outcome)
        self._counters.add(batches=1, stored=attempted - late_dups,
                           duplicates=plan.duplicates + late_dups, expired=plan.expired,
                           unknown=done.dropped, rejected=refused)
        if self._on_committed is not None and entries:
            self._on_committed([Committed(e.device_id, _seq(e), e.submitted) for e in entries])
        if self._on_report is not None:
            self._report_stored(self._on_report, done)

    def _report_stored(self, hook: ReportHook, done: _Outcome) -> None:
        """The hook, once per report this batch stored, in the order they were submitted."""
        for index, item in enumerate(done.plan.row_items):
            if item.report is None or index in done.already_stored:
                continue
            try:
                hook(item.device_id, item.report)
            except Exception:  # the hook's failure is its own: the report is stored
                log.exception("telemetry report hook failed (device %s, seq %d)",
                              item.device_id, item.report.seq)
                self._counters.add(hook_errors=1)


def _record_answers(
    session: Session, answers: list[CommandAnswer], rejections: Rejections
) -> list[tuple[CommandAnswer, QueuedCommand | FleetError]]:
    """Each result stored, or refused (another device's command, one already answered
    otherwise) and counted as a refusal of its device; a refusal writes nothing."""
    out: list[tuple[CommandAnswer, QueuedCommand | FleetError]] = []
    for answer in answers:
        try:
            out.append((answer, record_command_result(session, answer.device_id,
                                                      answer.result)))
        except FleetError as exc:
            count_rejection(rejections, answer.device_id, exc.code)
            out.append((answer, exc))
    return out


def _seq(entry: Entry) -> int | None:
    message = entry.message if isinstance(entry, Item) else None
    return message.seq if isinstance(message, ReportFacts) else None


def fail_unsettled(entries: list[Entry], reason: str) -> None:
    """Command results whose batch was not stored learn that they were not."""
    for entry in entries:
        if isinstance(entry, CommandAnswer) and not entry.outcome.done():
            entry.outcome.set_exception(IngestStoppedError(reason))
