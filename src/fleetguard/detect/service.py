"""The detection service: every stored report through features, rules and detectors, into
alarms. One worker thread; the caller never waits.

    observe(device_id, report) (any thread)        the worker thread, per batch
    bounded queue; when full the report is   ->    refresh rule sets and feedback (a few rows)
    dropped and counted (stats().dropped),         load facts, states and open alarms of new
    never blocking ingestion                       devices; per report: extract_features,
                                                   evaluate the device's rule set, run the
                                                   detectors, apply feedback, plan alarms;
                                                   one transaction; then tell the listeners

**Per-device state** (features, rule streaks, learned detectors' states, the open alarms'
quiet counts) lives in memory, at most ``max_devices`` devices (least recently reported
evicted, written first); it is written to ``detection_device_state`` every
``persist_every_s`` and on stop, compactly (:mod:`_state_codec`), so a restart neither
relearns what devices do nor alarms again on what they were known to do.

**Learning window**: first-seen rules are quiet until ``learning_window_s`` after the later
of the device's registration and the first report detection saw of it (a device registered
in bulk months before it is switched on still gets its window). Default one hour: what a
device does hourly (time sync, cloud check-ins) is learned before its first-seen rules
speak, while threshold rules, allow-lists and learned peers speak from the first report.

**Listeners** (``add_listener``) hear every alarm opened, updated or resolved, after the
transaction commits, on a thread of their own: a slow or failing listener delays nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from fleetguard.core.clock import now_ms, utcnow
from fleetguard.detect._devices import DeviceFacts, device_facts
from fleetguard.detect._ruleset_cache import RuleSetCache
from fleetguard.detect._service_store import (
    AlarmChange,
    Touched,
    apply_plan,
    describe,
    feedback_in_force,
    feedback_stamp,
    load_states,
    open_alarms,
    open_rows,
    persist_quiet,
    save_states,
)
from fleetguard.detect._state_codec import StoredState, attach_streaks
from fleetguard.detect.alarms import (
    NO_FEEDBACK,
    AlarmPolicy,
    DeviceFeedback,
    OpenAlarm,
    apply_feedback,
    plan_alarms,
)
from fleetguard.detect.features import FeatureVector, extract_features
from fleetguard.detect.pipeline import BatchDetector, DetectionContext, Detector
from fleetguard.detect.rules import EvaluationContext, Verdict, evaluate
from fleetguard.protocol import TelemetryReport
from fleetguard.store import Database
from fleetguard.store.tables.detect import AlarmRow

log = logging.getLogger("fleetguard.detect")

AlarmListener = Callable[[AlarmChange], None]
_STOP = object()


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    max_queue: int = 50_000  # reports waiting; beyond it they are dropped and counted
    max_batch: int = 1_000  # reports per transaction
    learning_window_s: float = 3600.0
    max_devices: int = 100_000  # devices whose state is held in memory
    persist_every_s: float = 60.0
    facts_ttl_s: float = 60.0  # a device's groups are re-read this often
    feedback_every_s: float = 60.0  # feedback re-read at least this often (expiries)
    policy: AlarmPolicy = field(default_factory=AlarmPolicy)


@dataclass(frozen=True, slots=True)
class DetectionStats:
    observed: int  # reports handed to observe()
    processed: int  # reports through detection
    dropped: int  # reports refused because the queue was full
    skipped: int  # reports of devices the registry does not hold
    failed: int  # reports of a batch whose transaction failed (logged)
    queued: int
    devices_in_memory: int
    alarms_opened: int
    alarms_updated: int
    alarms_resolved: int
    alarms_suppressed: int  # new alarms over the per-device rate limit
    listener_failures: int
    state_bytes_saved: int  # by the last persist


@dataclass(slots=True)
class _Device:
    facts: DeviceFacts
    state: StoredState
    causes: dict[str, OpenAlarm]
    recent_openings_ms: list[int]
    dirty: bool = False


@dataclass(slots=True)
class _Judged:
    """One report on its way through a batch."""

    device_id: str
    device: _Device
    report: TelemetryReport
    features: FeatureVector
    context: DetectionContext
    verdicts: list[Verdict]


@dataclass(slots=True)
class _Counts:
    observed: int = 0
    processed: int = 0
    dropped: int = 0
    skipped: int = 0
    failed: int = 0
    opened: int = 0
    updated: int = 0
    resolved: int = 0
    suppressed: int = 0
    listener_failures: int = 0
    state_bytes_saved: int = 0


class DetectionService:
    """See the module docstring. ``start()``, ``observe()`` from any thread, ``stop()``."""

    def __init__(self, db: Database, *, config: DetectionConfig | None = None,
                 detectors: Sequence[Detector] = ()) -> None:
        self.db = db
        self.config = config or DetectionConfig()
        self._detectors = {d.name: d for d in detectors}
        self._queue: queue.Queue[tuple[str, TelemetryReport] | object] = queue.Queue(
            maxsize=self.config.max_queue)
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._counts = _Counts()
        self._finished = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self._rulesets = RuleSetCache()
        self._feedback: dict[str, DeviceFeedback] = {}
        self._feedback_stamp: tuple[int, int] | None = None
        self._feedback_read = 0.0
        self._next_persist = time.monotonic() + self.config.persist_every_s
        self._listeners: list[AlarmListener] = []
        self._notices: queue.Queue[AlarmChange | object] = queue.Queue(maxsize=10_000)
        self._notifier: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="fleetguard-detection",
                                            daemon=True)
            self._notifier = threading.Thread(target=self._notify_loop,
                                              name="fleetguard-alarm-listeners", daemon=True)
            self._thread.start()
            self._notifier.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued, write every device's state, end the threads."""
        with self._lock:
            self._stopping = True
            thread, notifier = self._thread, self._notifier
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.error("detection did not stop within %.0f s", timeout)
        self._notices.put(_STOP)
        if notifier is not None:
            notifier.join(timeout)

    @property
    def detectors(self) -> tuple[str, ...]:
        """The learned detectors run after the rule set, by name."""
        return tuple(self._detectors)

    def add_listener(self, listener: AlarmListener) -> None:
        """Hear every alarm opened, updated or resolved (after commit, on its own thread)."""
        self._listeners.append(listener)

    # -- the caller's side ----------------------------------------------------------

    def observe(self, device_id: str, report: TelemetryReport) -> None:
        """Queue a stored report for detection; never blocks (full: dropped and counted)."""
        with self._lock:
            self._counts.observed += 1
            if self._stopping:
                self._counts.dropped += 1
                self._finished += 1
                return
        try:
            self._queue.put_nowait((device_id, report))
        except queue.Full:
            with self._progress:
                self._counts.dropped += 1
                self._finished += 1
                self._progress.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every report observed so far has been through detection."""
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self._counts.observed
            while self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.2))
        return self._notices_drained(deadline)

    def _notices_drained(self, deadline: float) -> bool:
        while self._notices.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._notices.unfinished_tasks

    def stats(self) -> DetectionStats:
        with self._lock:
            c = self._counts
            return DetectionStats(
                observed=c.observed, processed=c.processed, dropped=c.dropped,
                skipped=c.skipped, failed=c.failed, queued=self._queue.qsize(),
                devices_in_memory=len(self._devices), alarms_opened=c.opened,
                alarms_updated=c.updated, alarms_resolved=c.resolved,
                alarms_suppressed=c.suppressed, listener_failures=c.listener_failures,
                state_bytes_saved=c.state_bytes_saved)

    # -- the worker -----------------------------------------------------------------

    def _take(self) -> tuple[list[tuple[str, TelemetryReport]], bool]:
        try:
            first = self._queue.get(timeout=1.0)
        except queue.Empty:
            return [], False
        items: list[tuple[str, TelemetryReport]] = []
        stop = first is _STOP
        if not stop:
            items.append(first)  # type: ignore[arg-type]
        while len(items) < self.config.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                continue
            items.append(item)  # type: ignore[arg-type]
        return items, stop

    def _run(self) -> None:
        while True:
            items, stop = self._take()
            if items:
                self._batch(items)
            if stop or time.monotonic() >= self._next_persist:
                self._persist()
            if stop:
                if self._queue.empty():
                    return
                self._queue.put(_STOP)  # reports that came after the stop mark

    def _batch(self, items: list[tuple[str, TelemetryReport]]) -> None:
        changes: list[AlarmChange] = []
        kinds: Counter[str] = Counter()
        suppressed = 0
        try:
            # Reading, judging and writing apart: on SQLite the write lock is shared with
            # ingestion's writer, so it is taken only for the alarms' few statements.
            with self.db.session() as session:
                self._refresh(session)
                self._admit(session, {device_id for device_id, _ in items})
            judged = [j for j in (self._judge(d, report) for d, report in items) if j]
            self._learned(judged)
            if any(j.verdicts or j.device.causes for j in judged):
                with self.db.session() as session, session.no_autoflush:
                    rows = open_rows(session, (a.id for j in judged
                                               for a in j.device.causes.values()))
                    touched: list[Touched] = []
                    for report in judged:
                        more, held_back = self._alarm(session, report, rows)
                        touched.extend(more)
                        suppressed += held_back
                    kinds.update(change for change, _ in touched)
                    if self._listeners:
                        changes = [describe(t) for t in touched]
        except Exception:
            log.exception("detection failed on a batch of %d reports", len(items))
            with self._lock:
                self._counts.failed += len(items)
            self._forget([device_id for device_id, _ in items])
            changes, kinds, suppressed = [], Counter(), 0
        self._settle(items, changes, kinds, suppressed)

    def _settle(self, items: list[tuple[str, TelemetryReport]], changes: list[AlarmChange],
                kinds: Counter[str], suppressed: int) -> None:
        with self._progress:
            c = self._counts
            c.processed += len(items)
            c.opened += kinds["opened"]
            c.updated += kinds["updated"]
            c.resolved += kinds["resolved"]
            c.suppressed += suppressed
            self._finished += len(items)
            self._progress.notify_all()
        if self._listeners:
            for change in changes:
                try:
                    self._notices.put_nowait(change)
                except queue.Full:
                    with self._lock:
                        self._counts.listener_failures += 1

    def _forget(self, device_ids: list[str]) -> None:
        """After a failed transaction, what memory holds of these devices may be ahead of
        the database: read it again on their next report."""
        for device_id in device_ids:
            self._devices.pop(device_id, None)

    def _refresh(self, session: Session) -> None:
        self._rulesets.refresh(session)
        now = time.monotonic()
        stamp = feedback_stamp(session)
        if stamp != self._feedback_stamp or now - self._feedback_read >= \
                self.config.feedback_every_s:
            self._feedback = feedback_in_force(session, utcnow())
            self._feedback_stamp, self._feedback_read = stamp, now

    def _admit(self, session: Session, device_ids: set[str]) -> None:
        """Devices of this batch held in memory, with facts no older than their TTL."""
        now = time.monotonic()
        stale = {d for d in device_ids if d in self._devices
                 and now - self._devices[d].facts.loaded_at >= self.config.facts_ttl_s}
        missing = device_ids - self._devices.keys()
        facts = device_facts(session, stale | missing, now)
        for device_id in stale:
            if device_id in facts:
                self._devices[device_id].facts = facts[device_id]
        new = [d for d in missing if d in facts]
        if new:
            states = load_states(session, new, self._detectors)
            alarms = open_alarms(session, new, utcnow())
            for device_id in new:
                causes, recent = alarms[device_id]
                self._devices[device_id] = _Device(
                    facts[device_id], states.get(device_id, StoredState()), causes, recent)
        for device_id in device_ids & self._devices.keys():
            self._devices.move_to_end(device_id)
        self._evict(session)

    def _evict(self, session: Session) -> None:
        excess = len(self._devices) - self.config.max_devices
        if excess <= 0:
            return
        leaving = [self._devices.popitem(last=False) for _ in range(excess)]
        self._write(session, {d: dev for d, dev in leaving if dev.dirty})

    def _judge(self, device_id: str, report: TelemetryReport) -> _Judged | None:
        """Features and the rule set's verdicts of one report (None: unknown device)."""
        device = self._devices.get(device_id)
        if device is None:
            with self._lock:
                self._counts.skipped += 1
            return None
        state = device.state
        if state.first_report_ms is None:
            state.first_report_ms = report.collected_at_ms
        ruleset = self._rulesets.for_groups(device.facts.groups)
        attach_streaks(state, ruleset)
        features, state.features = extract_features(state.features, report)
        learning_until = (max(device.facts.registered_ms, state.first_report_ms)
                          + int(self.config.learning_window_s * 1000))
        evaluation = EvaluationContext(learning_until_ms=learning_until)
        verdicts, state.rules = evaluate(ruleset, state.rules, features, evaluation)
        device.dirty = True
        context = DetectionContext(
            device_id=device_id, groups=device.facts.groups,
            hardware_model=device.facts.hardware_model, ruleset=ruleset,
            evaluation=evaluation, now_ms=now_ms())
        return _Judged(device_id, device, report, features, context, verdicts)

    def _learned(self, judged: list[_Judged]) -> None:
        """The learned detectors' verdicts, added to each report's: a batch at a time, in
        rounds that hold at most one report per device (its state moves report by report)."""
        if not self._detectors:
            return
        rounds: list[list[_Judged]] = []
        seen: dict[str, int] = {}
        for report in judged:
            index = seen.get(report.device_id, 0)
            seen[report.device_id] = index + 1
            if index == len(rounds):
                rounds.append([])
            rounds[index].append(report)
        for batch in rounds:
            for name, detector in self._detectors.items():
                inputs = [(j.device.state.detectors.get(name), j.features, j.context)
                          for j in batch]
                results = (detector.detect_many(inputs) if isinstance(detector, BatchDetector)
                           else [detector.detect(*item) for item in inputs])
                for j, (found, state) in zip(batch, results, strict=True):
                    j.device.state.detectors[name] = state
                    j.verdicts.extend(found)

    def _alarm(self, session: Session, judged: _Judged,
               rows: dict[int, AlarmRow]) -> tuple[list[Touched], int]:
        """What a report's verdicts, once feedback is applied, do to the device's alarms."""
        device = judged.device
        verdicts = apply_feedback(judged.verdicts,
                                  self._feedback.get(judged.device_id, NO_FEEDBACK))
        plan = plan_alarms(device.causes, verdicts, now_ms=now_ms(),
                           recent_openings_ms=device.recent_openings_ms,
                           policy=self.config.policy)
        device.recent_openings_ms = list(plan.recent_openings_ms)
        if not plan.changed and not plan.quiet:
            return [], 0
        changes = apply_plan(session, judged.device_id, judged.report, plan, device.causes,
                             self.config.policy, rows)
        return changes, plan.suppressed

    def _persist(self) -> None:
        """Write the states changed since the last persist (and the quiet counts)."""
        self._next_persist = time.monotonic() + self.config.persist_every_s
        dirty = {d: dev for d, dev in self._devices.items() if dev.dirty}
        if not dirty:
            return
        try:
            with self.db.session() as session:
                self._write(session, dirty)
        except Exception:
            log.exception("could not write the detector state of %d devices", len(dirty))

    def _write(self, session: Session, devices: dict[str, _Device]) -> None:
        if not devices:
            return
        written = save_states(session, {d: dev.state for d, dev in devices.items()},
                              self._detectors)
        persist_quiet(session, {a.id: a.quiet_reports for dev in devices.values()
                                for a in dev.causes.values() if a.quiet_reports})
        for device in devices.values():
            device.dirty = False
        with self._lock:
            self._counts.state_bytes_saved = written

    # -- listeners ------------------------------------------------------------------

    def _notify_loop(self) -> None:
        while True:
            change = self._notices.get()
            try:
                if change is _STOP:
                    return
                for listener in list(self._listeners):
                    try:
                        listener(change)  # type: ignore[arg-type]
                    except Exception:
                        log.exception("an alarm listener failed")
                        with self._lock:
                            self._counts.listener_failures += 1
            finally:
                self._notices.task_done()


__all__ = [
    "AlarmChange",
    "AlarmListener",
    "DetectionConfig",
    "DetectionService",
    "DetectionStats",
]
