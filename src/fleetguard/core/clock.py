"""Time in one place: always timezone-aware UTC, and replaceable in tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    """Milliseconds since the epoch, as ``utcnow`` would give them (cheaper, per message)."""
    return time.time_ns() // 1_000_000


def as_utc(value: datetime) -> datetime:
    """Attach UTC to naive datetimes read back from databases that drop the zone (SQLite)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
