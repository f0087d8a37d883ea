"""Mosquitto's log, followed while it runs: who sent an oversized packet, whose queue is full.

Mosquitto names a client in its log by its client id, which the client chooses. The
username is the certificate's CN (``use_identity_as_username``), which the fleet CA
vouches for, and Mosquitto writes it in one line only, when the client connects::

    New client connected from 10.0.0.7:50212 as <client id> (p4, c1, k60, u'<CN>').

So the watch remembers client id -> username from those lines and counts later lines
against the username, never the id: a device that takes another's uuid as its client id
is counted as itself. (The config ``fleetguard broker`` writes has Mosquitto replace every
client id by the username, ``use_username_as_clientid``; the mapping still holds there,
and for a broker configured without it.) The lines followed (``connection_messages true``,
level notice; Mosquitto 2.0.11 ``src/loop.c`` and ``src/database.c``)::

    Client <id> disconnected due to oversize packet.       over max_packet_size
    Outgoing messages are being dropped for client <id>.    a queue limit reached (said
                                                            once until the queue drains)

Lines are split on ``\\n`` only. Mosquitto refuses control characters in a client id, so
no client can end a line; ``str.splitlines`` would also split on U+2028 and the like,
which an id may contain. Where an id could itself contain the text that follows it, the
patterns are anchored at the end of the line, and Mosquitto's own text is the last.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fleetguard.broker._acl import canonical_device_id

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1
_MAX_PARTIAL = 1 << 20  # a line longer than this is not Mosquitto's: dropped
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: ")  # log_timestamp_format
_CONNECTED = re.compile(
    r"New client connected from \S+ as (?P<id>.+) \(p\d+, c\d+, k\d+, u'(?P<user>[^']*)'\)\."
)
_OVERSIZE = re.compile(r"Client (?P<id>.+) disconnected due to oversize packet\.")
_DROPPING = re.compile(r"Outgoing messages are being dropped for client (?P<id>.+)\.")
_GONE = re.compile(
    r"Client (?P<id>.+) (?:closed its connection|has exceeded timeout, disconnecting"
    r"|been disconnected by administrative action"
    r"|disconnected(?: due to [a-z0-9 ]+|, not authorised|: .*)?)\."
)


@dataclass(frozen=True, slots=True)
class Oversize:
    """A client sent a packet over ``max_packet_size`` and was disconnected."""

    client_id: str
    username: str | None  # None: it never completed CONNECT, or connected before we read

    @property
    def device_id(self) -> str | None:
        return canonical_device_id(self.username) if self.username else None


@dataclass(frozen=True, slots=True)
class QueueFull:
    """Mosquitto started dropping messages for a client: a queue limit was reached."""

    client_id: str
    username: str | None


Event = Oversize | QueueFull


class MosquittoLogParser:
    """Reads lines one by one; keeps client id -> username of the connected clients."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}

    @property
    def connected(self) -> int:
        return len(self._users)

    def feed(self, line: str) -> Event | None:
        stamp = _TIMESTAMP.match(line)
        text = line[stamp.end():] if stamp else line
        if (m := _CONNECTED.fullmatch(text)) is not None:
            self._users[m["id"]] = m["user"]
            return None
        if (m := _OVERSIZE.fullmatch(text)) is not None:
            return Oversize(m["id"], self._users.pop(m["id"], None))
        if (m := _DROPPING.fullmatch(text)) is not None:
            return QueueFull(m["id"], self._users.get(m["id"]))
        if (m := _GONE.fullmatch(text)) is not None:
            self._users.pop(m["id"], None)
        return None


@dataclass
class LogWatchStats:
    oversize_by_device: Counter[str] = field(default_factory=Counter)
    oversize_other: int = 0  # not a device, or not known to have connected
    queue_full: Counter[str] = field(default_factory=Counter)  # by client id


class BrokerLogWatch:
    """Follows ``path`` from ``offset`` in a thread; an oversized packet from a device
    calls ``on_oversize(device_id)`` (from that thread).

    A replaced or truncated file is read again from its start.
    """

    def __init__(
        self,
        path: Path,
        offset: int = 0,
        *,
        on_oversize: Callable[[str], None] | None = None,
        poll: float = POLL_INTERVAL,
    ) -> None:
        self.path, self._offset, self._poll = path, offset, poll
        self._on_oversize = on_oversize
        self._parser = MosquittoLogParser()
        self._file: IO[bytes] | None = None
        self._partial = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = LogWatchStats()

    def start(self) -> BrokerLogWatch:
        self._thread = threading.Thread(target=self._run, name="fleetguard-broker-log",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Read what is left, then end the thread."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self.read()
            except Exception:  # a long-running loop never dies of one bad read
                log.exception("reading the broker's log failed")
            if stopping:
                return
            self._stop.wait(self._poll)

    def read(self) -> int:
        """Handle whatever was appended since the last call; the number of lines."""
        with self._lock:
            lines = self._read_lines()
            for line in lines:
                event = self._parser.feed(line.decode("utf-8", "replace"))
                if event is not None:
                    self._handle(event)
            return len(lines)

    def _read_lines(self) -> list[bytes]:
        handle = self._open()
        if handle is None:
            return []
        data = handle.read()
        if not data:
            return []
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if len(self._partial) > _MAX_PARTIAL:
            self._partial = b""
        return chunks

    def _open(self) -> IO[bytes] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        handle = self._file
        if handle is not None:
            mine = os.fstat(handle.fileno())
            if (mine.st_dev, mine.st_ino) != (st.st_dev, st.st_ino) or st.st_size < handle.tell():
                handle.close()  # replaced or truncated: the new content from its start
                handle, self._offset, self._partial = None, 0, b""
        if handle is None:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed in stop()
            handle.seek(min(self._offset, st.st_size))
            self._file = handle
        return handle

    def _handle(self, event: Event) -> None:
        who = f"{event.client_id!r} ({event.username or 'unknown'})"
        if isinstance(event, QueueFull):
            self.stats.queue_full[event.client_id] += 1
            log.warning("the broker's queue for client %s is full: messages for it are "
                        "dropped until it catches up", who)
            return
        device = event.device_id
        if device is None:
            self.stats.oversize_other += 1
            log.warning("client %s sent a packet over the broker's limit and was "
                        "disconnected", who)
            return
        self.stats.oversize_by_device[device] += 1
        log.warning("device %s sent a packet over the broker's limit and was disconnected "
                    "(client id %r)", device, event.client_id)
        if self._on_oversize is not None:
            self._on_oversize(device)
