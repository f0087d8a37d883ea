"""The outbox: an on-disk, crash-safe, bounded FIFO of encoded reports.

One SQLite file (WAL, ``synchronous=FULL``: a report that ``push`` returned for is on
disk, and survives a crash or a power cut). Reports leave in the order they came in:
``peek`` shows the oldest, ``ack`` removes them once the server has them. Delivery is at
least once (a crash between send and ack sends again); the server drops repeats by the
report's ``seq``.

Bounds are by count and by bytes. Past either, the *oldest* reports are dropped, and
the drop is counted (persistently): losing the oldest keeps the device's present state
visible, and the count tells the server how much history is missing.

The file also keeps the agent's next telemetry sequence number, so ``seq`` keeps
increasing across restarts.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fleetguard.agent.errors import OutboxError
from fleetguard.core.errors import ConfigurationError
from fleetguard.protocol import ContentType

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class BufferedReport:
    position: int  # increases with every push, never reused
    payload: bytes
    content_type: ContentType


class ReportBuffer:
    """A bounded FIFO of encoded messages in one SQLite file; one process uses it at a time."""

    def __init__(self, path: Path, *, max_items: int, max_bytes: int) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ConfigurationError("the outbox needs max_items >= 1 and max_bytes >= 1")
        self._path = path
        self._max_items = max_items
        self._max_bytes = max_bytes
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._conn = self._connect(path)
        except sqlite3.DatabaseError:
            # A corrupt file must not keep the agent down: keep it for a post-mortem,
            # start empty, and say so.
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            path.replace(aside)
            logger.warning("outbox %s was unreadable; moved to %s", path, aside)
            self._conn = self._connect(path)
        try:
            count, size = self._conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox"
            ).fetchone()
            self._count = int(count)
            self._bytes = int(size)
            with self._conn:
                self._trim()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox {path}: {exc}") from exc

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=5.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        path.chmod(0o600)
        return conn

    # -- the queue --------------------------------------------------------------------

    def push(self, payload: bytes, content_type: ContentType) -> int:
        """Append one encoded message, dropping the oldest if a bound is passed.

        Returns:
            The message's position (increasing, never reused).
        Raises:
            OutboxError: the message alone is over ``max_bytes``, or the disk failed.
        """
        size = len(payload)
        if size > self._max_bytes:
            raise OutboxError(f"a {size}-byte message cannot fit an outbox of {self._max_bytes}")
        try:
            with self._conn:
                cursor = self._conn.execute(
                    "INSERT INTO outbox (content_type, payload, size) VALUES (?, ?, ?)",
                    (content_type.value, payload, size),
                )
                self._count += 1
                self._bytes += size
                self._trim()
        except sqlite3.Error as exc:
            self._reload_totals()
            raise OutboxError(f"cannot write the outbox: {exc}") from exc
        position = cursor.lastrowid
        if position is None:  # pragma: no cover - sqlite always sets it after an INSERT
            raise OutboxError("the outbox did not return a position")
        return position

    def peek(self, limit: int = 1) -> list[BufferedReport]:
        """The oldest ``limit`` messages, oldest first, without removing them."""
        try:
            rows = self._conn.execute(
                "SELECT id, payload, content_type FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox: {exc}") from exc
        return [BufferedReport(row[0], bytes(row[1]), ContentType(row[2])) for row in rows]

    def ack(self, position: int) -> None:
        """Remove every message up to and including ``position`` (they were delivered)."""
        try:
            with self._conn:
                count, size = self._conn.execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE id <= ?",
                    (position,),
                ).fetchone()
                self._conn.execute("DELETE FROM outbox WHERE id <= ?", (position,))
        except sqlite3.Error as exc:
            self._reload_totals()
            raise OutboxError(f"cannot update the outbox: {exc}") from exc
        self._count -= int(count)
        self._bytes -= int(size)

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def dropped_total(self) -> int:
        """Messages dropped to keep within the bounds, since the file was created."""
        return self._meta("dropped_total")

    # -- the sequence -----------------------------------------------------------------

    def next_report_seq(self) -> int:
        """Take the next telemetry sequence number (persisted: it survives restarts)."""
        try:
            with self._conn:
                value = self._meta("next_seq")
                self._set_meta("next_seq", value + 1)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot update the outbox: {exc}") from exc
        return value

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReportBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals (called inside a transaction) ----------------------------------------

    def _trim(self) -> None:
        dropped = 0
        while self._count > self._max_items or self._bytes > self._max_bytes:
            excess = max(self._count - self._max_items, 1)
            rows = self._conn.execute(
                "SELECT id, size FROM outbox ORDER BY id LIMIT ?", (excess,)
            ).fetchall()
            if not rows:
                break
            if self._count <= self._max_items:  # over by bytes only: drop one at a time
                rows = rows[:1]
            last = rows[-1][0]
            self._conn.execute("DELETE FROM outbox WHERE id <= ?", (last,))
            self._count -= len(rows)
            self._bytes -= sum(int(row[1]) for row in rows)
            dropped += len(rows)
        if dropped:
            self._set_meta("dropped_total", self._meta("dropped_total") + dropped)
            logger.warning("outbox full: dropped the %d oldest report(s)", dropped)

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _reload_totals(self) -> None:
        try:
            count, size = self._conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox"
            ).fetchone()
        except sqlite3.Error:
            return
        self._count, self._bytes = int(count), int(size)
