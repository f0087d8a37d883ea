"""The notifier: ``publish`` hands an event over and returns at once; one worker thread
stores it in the outbox and delivers, each destination in its own lane.

* ``publish`` never blocks and never touches the database: it puts the event on a bounded
  queue. When the queue is full the event is refused: ``publish`` returns False, the
  refusal is counted (``stats.overflowed``) and logged with the event's id and kind, and
  the caller decides (the detection service keeps the alarm, which is in its own table).
* The worker moves queued events to the outbox (one transaction per batch), then tries the
  head of each destination's queue that is due, several destinations at once, each in
  event-time order. What is in the outbox survives a restart; ``stop`` stores what is
  still queued before it returns.
* A failing round (the database away) is logged, counted and retried; the loop never dies.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta

from fleetguard.core.clock import utcnow
from fleetguard.keys import MasterKey
from fleetguard.notify.destinations import get_destination, list_destinations, webhook_secret
from fleetguard.notify.errors import DestinationNotFoundError
from fleetguard.notify.models import (
    Attempt,
    DeliveryState,
    Destination,
    NotificationEvent,
    NotifierStats,
)
from fleetguard.notify.outbox import (
    Claimed,
    RetryPolicy,
    claim_head,
    enqueue_events,
    prune_finished,
    queue_heads,
    record_attempt,
)
from fleetguard.notify.syslog import send_syslog
from fleetguard.notify.webhook import send_webhook
from fleetguard.store import Database

log = logging.getLogger("fleetguard.notify")


@dataclass(frozen=True, slots=True)
class NotifierSettings:
    queue_size: int = 10_000
    batch_size: int = 500  # events per outbox transaction
    poll_s: float = 1.0  # how often the outbox is read when nothing wakes the worker
    lanes: int = 4  # destinations delivered to at once
    per_round: int = 100  # deliveries per destination per round, at most
    timeout_s: float = 5.0
    retention: timedelta = timedelta(days=30)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def deliver_once(
    db: Database, master: MasterKey, destination: Destination, event: NotificationEvent,
    *, timeout: float = 5.0, attempt: int = 1,
) -> Attempt:
    """One attempt to deliver ``event`` to ``destination`` (no retry, no outbox)."""
    secret = None
    if destination.webhook is not None:
        with db.read_session() as session:
            secret = webhook_secret(session, master, destination.id)
    return send_to(destination, secret, event, timeout=timeout, attempt=attempt)


def send_to(
    destination: Destination, secret: str | None, event: NotificationEvent, *,
    timeout: float = 5.0, attempt: int = 1,
) -> Attempt:
    """One attempt, with the webhook's secret already read."""
    if destination.webhook is not None:
        if secret is None:
            return Attempt(delivered=False, retry=False, error="the webhook has no secret")
        return send_webhook(destination.webhook, secret, event, timeout=timeout,
                            attempt=attempt)
    assert destination.syslog is not None
    return send_syslog(destination.syslog, event, timeout=timeout)


class Notifier:
    def __init__(self, db: Database, master: MasterKey,
                 settings: NotifierSettings | None = None) -> None:
        self._db = db
        self._master = master
        self.settings = settings or NotifierSettings()
        self._queue: queue.Queue[NotificationEvent] = queue.Queue(self.settings.queue_size)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats = NotifierStats()
        self._stats_lock = threading.Lock()
        self._lanes = ThreadPoolExecutor(self.settings.lanes, thread_name_prefix="notify-lane")
        self._last_prune = utcnow()
        self._busy: set[str] = set()  # destinations with a lane running

    # -- the caller's side ---------------------------------------------------------------

    def publish(self, event: NotificationEvent) -> bool:
        """Hand ``event`` over without waiting; False (counted, logged) if the queue is full."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._count(overflowed=1)
            log.warning("notification queue full (%d events): event %s (%s) refused",
                        self.settings.queue_size, event.id, event.kind)
            return False
        self._count(published=1)
        self._wake.set()
        return True

    def stats(self) -> NotifierStats:
        with self._stats_lock:
            return replace(self._stats, queued=self._queue.qsize())

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Store what is still queued and end the worker (an attempt under way finishes)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._lanes.shutdown(wait=True, cancel_futures=True)
        self._store_queued()

    def wake(self) -> None:
        """Look at the outbox now (rows added by another process, a test's event)."""
        self._wake.set()

    # -- the worker ----------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = self.settings.poll_s
            try:
                self._store_queued()
                wait = min(wait, self._deliver_due())
                self._prune()
            except Exception:  # the loop outlives any one round's failure
                self._count(store_errors=1)
                log.exception("notification round failed; retrying")
            if self._queue.empty():
                self._wake.wait(max(0.01, wait))
            self._wake.clear()

    def _store_queued(self) -> None:
        while True:
            batch: list[NotificationEvent] = []
            while len(batch) < self.settings.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            try:
                with self._db.session() as session:
                    destinations = list_destinations(session)
                    enqueued = enqueue_events(session, batch, destinations)
            except Exception:
                # Put them back (what no longer fits is counted as overflow) and let the
                # next round try again.
                for event in batch:
                    try:
                        self._queue.put_nowait(event)
                    except queue.Full:
                        self._count(overflowed=1)
                        log.warning("notification event %s lost: the database failed and "
                                    "the queue is full", event.id)
                raise
            self._count(duplicates=enqueued.duplicates, rejected=len(enqueued.rejected))
            for event_id in enqueued.rejected:
                log.error("notification event %s rejected: its body is not JSON", event_id)

    def _deliver_due(self) -> float:
        """Start a lane for each destination whose head is due (and has none running);
        returns the seconds until the next head is due. Lanes run beside the worker, so a
        slow receiver never keeps new events out of the outbox."""
        now = utcnow()
        with self._db.read_session() as session:
            heads = queue_heads(session)
        for destination_id, _, at in heads:
            if at <= now and not self._stopping.is_set():
                with self._stats_lock:
                    if destination_id in self._busy:
                        continue
                    self._busy.add(destination_id)
                self._lanes.submit(self._run_lane, destination_id)
        later = [(at - now).total_seconds() for _, _, at in heads if at > now]
        return min(later, default=self.settings.poll_s)

    def _run_lane(self, destination_id: str) -> None:
        more = False
        try:
            more = self._deliver_lane(destination_id)
        except Exception:
            self._count(store_errors=1)
            log.exception("notification lane of destination %s failed; retrying",
                          destination_id)
        finally:
            with self._stats_lock:
                self._busy.discard(destination_id)
            if more:  # its round ended with deliveries still due: look again at once
                self._wake.set()

    def _deliver_lane(self, destination_id: str) -> bool:
        """Deliver the destination's due heads in order; True if some are still due."""
        for _ in range(self.settings.per_round):
            if self._stopping.is_set():
                return False
            # One transaction reads the destination and its secret as they are now (a
            # rotated secret signs the very next attempt) and claims the head.
            with self._db.session() as session:
                try:
                    destination = get_destination(session, destination_id)
                except DestinationNotFoundError:
                    return False
                # A disabled destination's deliveries wait, in order, until it is enabled.
                if not destination.enabled:
                    return False
                claimed = claim_head(session, destination_id, self.settings.retry)
                secret = None
                if claimed is not None and destination.webhook is not None:
                    secret = webhook_secret(session, self._master, destination_id)
            if claimed is None:
                return False
            state = self._attempt(destination, secret, claimed)
            if state is DeliveryState.PENDING:  # the head waits: so does the lane
                return False
        return True

    def _attempt(self, destination: Destination, secret: str | None, claimed: Claimed
                 ) -> DeliveryState:
        attempt = send_to(destination, secret, claimed.event, timeout=self.settings.timeout_s,
                          attempt=claimed.attempt)
        with self._db.session() as session:
            state = record_attempt(session, claimed, attempt, self.settings.retry)
        if state is DeliveryState.DELIVERED:
            self._count(delivered=1)
        elif state is DeliveryState.PENDING:
            self._count(retried=1)
            log.info("notification %s to destination %s: attempt %d failed (%s); will retry",
                     claimed.event.id, destination.name, claimed.attempt, attempt.error)
        else:
            self._count(failed=1)
            log.warning("notification %s to destination %s failed for good after %d "
                        "attempt(s): %s", claimed.event.id, destination.name, claimed.attempt,
                        attempt.error)
        return state

    def _prune(self) -> None:
        now = utcnow()
        if now - self._last_prune < timedelta(hours=1):
            return
        self._last_prune = now
        with self._db.session() as session:
            prune_finished(session, older_than=now - self.settings.retention)


__all__ = ["Notifier", "NotifierSettings", "deliver_once", "send_to"]
