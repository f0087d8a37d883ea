"""Which executables are running that the agent has not seen before, hashed within bounds.

An executable is identified by its file (device, inode, size, mtime), not its path: a
binary replaced in place, or copied elsewhere, is new. Hashing reads through
``/proc/<pid>/exe``, which still reaches a binary deleted after it started (a common
trick of droppers). At most ``max_hashes`` new files are hashed per report, and none
larger than ``max_file_bytes``; the others wait in a bounded queue for the next report.
What has been seen is kept in a small JSON file so that a restart does not report the
whole system again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from fleetguard.protocol import MAX_PATH_CHARS, NewExecutable

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_MAX_PENDING = 1024


class ExecutableTracker:
    def __init__(
        self,
        *,
        state_path: Path | None,
        max_hashes: int,
        max_file_bytes: int,
        max_known: int = 8192,
        proc: Path = Path("/proc"),
    ) -> None:
        self._state_path = state_path
        self._max_hashes = max_hashes
        self._max_file_bytes = max_file_bytes
        self._max_known = max_known
        self._proc = proc
        self._known: dict[str, None] = dict.fromkeys(self._load())
        self._pending: dict[str, tuple[int, str, int]] = {}  # key -> (pid, path, size)

    def notice(self, pid: int) -> None:
        """A process the sampler saw start: queue its executable if new (hashed at the report).

        A short-lived process is gone by the next report; its file is then hashed by path.
        """
        seen = self._identify(pid)
        if seen is None:
            return
        key, path, size = seen
        if key not in self._known and key not in self._pending and (
                len(self._pending) < _MAX_PENDING):
            self._pending[key] = (pid, path, size)

    def notice_file(self, pid: int, path: str, key: str, size: int) -> None:
        """A file the kernel executed (told by the exec watch): queued if new."""
        if key not in self._known and key not in self._pending and (
                len(self._pending) < _MAX_PENDING):
            self._pending[key] = (pid, path, size)

    def observe(self, pids: Iterable[int]) -> tuple[list[NewExecutable], int]:
        """Look at the running processes; return new executables and how many still wait."""
        for pid in pids:
            self.notice(pid)
        report: list[NewExecutable] = []
        for key in list(self._pending)[: self._max_hashes]:
            pid, path, size = self._pending.pop(key)
            digest = self._hash(pid, path) if size <= self._max_file_bytes else None
            report.append(
                NewExecutable(path=path[:MAX_PATH_CHARS], sha256=digest, size_bytes=size, pid=pid)
            )
            self._known[key] = None
        if report:
            while len(self._known) > self._max_known:
                del self._known[next(iter(self._known))]
            self._save()
        return report, len(self._pending)

    def _identify(self, pid: int) -> tuple[str, str, int] | None:
        link = self._proc / str(pid) / "exe"
        try:
            info = os.stat(link)
            path = os.readlink(link)
        except OSError:  # kernel threads have no exe; gone or not ours to read
            return None
        if not path:
            return None
        key = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"
        return key, path, info.st_size

    def _hash(self, pid: int, path: str) -> str | None:
        for source in (self._proc / str(pid) / "exe", Path(path)):
            digest = hashlib.sha256()
            read = 0
            try:
                with open(source, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        read += len(chunk)
                        if read > self._max_file_bytes:
                            return None
                        digest.update(chunk)
            except OSError:
                continue
            return digest.hexdigest()
        return None

    def _load(self) -> list[str]:
        if self._state_path is None:
            return []
        try:
            data = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        return [item for item in data[-self._max_known :] if isinstance(item, str)]

    def _save(self) -> None:
        if self._state_path is None:
            return
        temporary = self._state_path.with_name(self._state_path.name + ".tmp")
        try:
            self._state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(temporary, "w") as handle:
                json.dump(list(self._known), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self._state_path)
        except OSError as exc:
            logger.warning("cannot save known executables to %s: %s", self._state_path, exc)
