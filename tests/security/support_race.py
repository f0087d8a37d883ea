"""Helpers for replay races: run requests at the same time, and make their units of work
read before either writes, so a check-then-set without a lock is caught every time rather
than once in a thousand runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from fleetguard.store import Database

T = TypeVar("T")
_WAITED = "security_test_waited_for_the_race"


@contextmanager
def reads_before_writes(db: Database, parties: int, wait_s: float = 2.0) -> Iterator[None]:
    """While active, the first flush of each unit of work opened on ``db`` waits until
    ``parties`` units have got that far (or ``wait_s`` passed): every unit has then read
    what it decides on, and none has written yet.

    Where the code locks what it reads (SELECT ... FOR UPDATE, a conditional UPDATE, the
    SQLite writer lock) the others never reach the barrier while the first holds the lock;
    the first waits ``wait_s`` and goes on alone, and the result is the serial one. Where
    it does not, all of them decide on the same old state.
    """
    barrier = threading.Barrier(parties)

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        if session.info.get(_WAITED):
            return
        session.info[_WAITED] = True
        with suppress(threading.BrokenBarrierError):
            barrier.wait(wait_s)

    event.listen(db.sessions, "before_flush", before_flush)
    try:
        yield
    finally:
        event.remove(db.sessions, "before_flush", before_flush)
        barrier.abort()


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Start every call in its own thread at the same moment; their results in order."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        start.wait(10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))
