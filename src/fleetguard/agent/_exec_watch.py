"""Every program the kernel executes, as it happens (fanotify ``FAN_OPEN_EXEC``).

A program that starts and exits between two samples is in no process list; the kernel
still tells a watcher of the file it opened to execute (and of the ELF interpreter it
loads with it). The agent marks each mount of a file system programs can run from and
takes the queued events at every sample, without blocking: each names the file by an
open descriptor, from which its path and identity are read before it is closed. Needs
CAP_SYS_ADMIN (the agent runs as root on a device) and Linux 5.0; elsewhere :class:`ExecWatch`
cannot start and the samples alone find programs. Past the kernel's queue (16,384 events
between two samples) events are lost; :meth:`ExecWatch.drain` counts the overflows.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
from dataclasses import dataclass

_FAN_CLOEXEC, _FAN_NONBLOCK = 0x1, 0x2
_FAN_MARK_ADD, _FAN_MARK_MOUNT = 0x1, 0x10
_FAN_OPEN_EXEC = 0x1000
_FAN_Q_OVERFLOW = 0x4000
_AT_FDCWD = -100
_EVENT = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata
_OCTAL = re.compile(r"\\([0-7]{3})")  # /proc/self/mounts writes a space as \040
# File systems no program runs from (kernel views, pseudo file systems).
_NOT_PROGRAMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "binfmt_misc",
    "autofs", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs"})


@dataclass(frozen=True, slots=True)
class Executed:
    pid: int
    path: str
    key: str  # device:inode:size:mtime, as ExecutableTracker identifies a binary
    size: int


class ExecWatch:
    """Raises OSError when fanotify is not available or not permitted."""

    def __init__(self, mounts_file: str = "/proc/self/mounts") -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        init, mark = libc.fanotify_init, libc.fanotify_mark
        init.argtypes, init.restype = [ctypes.c_uint, ctypes.c_uint], ctypes.c_int
        mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                         ctypes.c_char_p]
        mark.restype = ctypes.c_int
        flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_LARGEFILE", 0)
        self._fd = init(_FAN_CLOEXEC | _FAN_NONBLOCK, flags)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "fanotify_init")
        marked = 0
        for mount in _program_mounts(mounts_file):
            if mark(self._fd, _FAN_MARK_ADD | _FAN_MARK_MOUNT, _FAN_OPEN_EXEC, _AT_FDCWD,
                    os.fsencode(mount)) == 0:
                marked += 1
        if not marked:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), "fanotify_mark: no mount could be watched")

    def drain(self, limit: int = 16_384) -> tuple[list[Executed], int]:
        """(the programs executed since the last call, how many queue overflows)."""
        executed: list[Executed] = []
        overflows = 0
        while len(executed) < limit:
            try:
                data = os.read(self._fd, 64 * _EVENT.size)
            except BlockingIOError:
                break
            for offset in range(0, len(data) - _EVENT.size + 1, _EVENT.size):
                length, _, _, _, mask, fd, pid = _EVENT.unpack_from(data, offset)
                if mask & _FAN_Q_OVERFLOW:
                    overflows += 1
                if fd >= 0:
                    seen = _identify(fd, pid)
                    if seen is not None:
                        executed.append(seen)
                if length != _EVENT.size:
                    break  # an event with information records: not asked for
        return executed, overflows

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _identify(fd: int, pid: int) -> Executed | None:
    try:
        info = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    finally:
        os.close(fd)
    key = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"
    return Executed(pid, path.removesuffix(" (deleted)"), key, info.st_size)


def _program_mounts(mounts_file: str) -> list[str]:
    mounts: list[str] = []
    try:
        with open(mounts_file) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 3 and parts[2] not in _NOT_PROGRAMS:
                    mounts.append(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), parts[1]))
    except OSError:
        return []
    return list(dict.fromkeys(mounts))
