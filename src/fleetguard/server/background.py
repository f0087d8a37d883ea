"""Work the server repeats while it runs (CRL upkeep, scan schedules)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("fleetguard.server")


async def run_periodically(
    work: Callable[[], object], *, every_s: int, stopping: Callable[[], bool], failed: str,
) -> None:
    """Run ``work`` in a worker thread every ``every_s`` seconds until ``stopping()``.

    A failure is logged as ``failed`` and retried next round: it must not stop the server.
    The wait is in one-second steps so that a stop is noticed within a second.
    """
    while not stopping():
        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception(failed)
        for _ in range(every_s):
            if stopping():
                return
            await asyncio.sleep(1)
