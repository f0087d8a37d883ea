"""Cheap readers of the kernel's socket and process tables, for sampling between reports.

Sockets come from the kernel's tables of the agent's network namespace, without the
per-process file descriptor walk that mapping sockets to processes costs (psutil does that
walk; a sampler cannot afford it every second). TCP is asked of the kernel over netlink
(``sock_diag``, what ``ss`` uses): one walk of the connection table per address family,
where ``/proc/net/tcp`` walks it again for every page read (about half the cost, measured
by ``benchmarks/bench_agent_sampling.py``); ``/proc/net/{tcp,tcp6}`` is the fallback
where netlink is not available, and UDP is read from ``/proc/net/{udp,udp6}``.
``/proc/<pid>/stat`` gives a process's name, start time and CPU time (all its threads).
A file that is gone or unreadable is skipped: a process may exit while it is read.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from fleetguard.protocol import TransportProto

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# /proc/net/tcp states (include/net/tcp_states.h)
TCP_ESTABLISHED = 0x01
TCP_SYN_RECV = 0x03
TCP_LISTEN = 0x0A
UDP_CONNECTED = 0x01  # a UDP socket reports ESTABLISHED once connect()ed
_TABLES = (("tcp", TransportProto.TCP), ("tcp6", TransportProto.TCP),
           ("udp", TransportProto.UDP), ("udp6", TransportProto.UDP))
_DEFAULT_EPHEMERAL = (32768, 60999)
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_DUMP_REQUEST = 0x301  # NLM_F_REQUEST | NLM_F_DUMP
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HEADER = struct.Struct("=IHHII")
_ALL_STATES = 0xFFFFFFFF
_DIAG_MSG_BYTES = 72  # struct inet_diag_msg
# sock_diag multicast groups (SKNLGRP_INET{,6}_{TCP,UDP}_DESTROY = 1..4), as bind() masks
_TCP_DESTROY_GROUPS = 1 << 0 | 1 << 2
_UDP_DESTROY_GROUPS = 1 << 1 | 1 << 3


class SocketRow(NamedTuple):  # a tuple: made thousands of times a second
    proto: TransportProto
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: int

    @property
    def listening(self) -> bool:
        """A TCP socket in LISTEN, or a bound UDP socket with no peer."""
        if self.proto is TransportProto.TCP:
            return self.state == TCP_LISTEN
        return self.remote_port == 0 and self.state != UDP_CONNECTED

    @property
    def has_peer(self) -> bool:
        return self.remote_port != 0 and self.state != TCP_LISTEN


class ProcessRow(NamedTuple):
    pid: int
    name: str
    start_ticks: int  # clock ticks after boot
    cpu_ticks: int  # user + system, all threads


@lru_cache(maxsize=4096)
def decode_address(hex_text: str) -> str:
    """The text form of a /proc/net address (host-order 32-bit words); IPv4-mapped as IPv4."""
    raw = bytes.fromhex(hex_text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    address = ipaddress.IPv6Address(raw)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else socket.inet_ntop(socket.AF_INET6, raw)


def _endpoint(text: bytes) -> tuple[str, int]:
    address, _, port = text.decode("ascii").partition(":")
    return decode_address(address), int(port, 16)


@lru_cache(maxsize=4096)  # a device talks to few addresses, sampled again and again
def _diag_address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    mapped = ipaddress.IPv6Address(raw).ipv4_mapped
    return str(mapped) if mapped is not None else socket.inet_ntop(socket.AF_INET6, raw)


def _parse_diag(data: bytes, rows: list[SocketRow],
                proto: TransportProto = TransportProto.TCP) -> bool:
    """Append the sockets of netlink messages to ``rows``; True at the end of a dump."""
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(data):
        length, kind = _NLMSG_HEADER.unpack_from(data, offset)[:2]
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR or length < _NLMSG_HEADER.size + _DIAG_MSG_BYTES:
            raise OSError("sock_diag refused the request")
        body = offset + _NLMSG_HEADER.size  # struct inet_diag_msg
        family, state = data[body], data[body + 1]
        local_port, remote_port = struct.unpack_from(">HH", data, body + 4)
        rows.append(SocketRow(
            proto, _diag_address(family, data[body + 8:body + 24]), local_port,
            _diag_address(family, data[body + 24:body + 40]), remote_port, state))
        offset += (length + 3) & ~3
    return False


class ClosedSockets:
    """Every TCP and UDP socket the kernel frees in this network namespace, as it happens.

    The kernel announces each socket it destroys to the sock_diag multicast groups (Linux
    4.9+, CAP_NET_ADMIN): a connection that lived between two samples and left no TIME_WAIT
    behind (its peer ended it) is told here; :meth:`drain` takes what queued since the last
    call, without blocking. Past the receive buffer (about 1 MiB, thousands of sockets)
    the kernel drops announcements; :meth:`drain` counts the times it did.

    Raises:
        OSError: netlink, the groups, or the permission to join them is not available.
    """

    def __init__(self) -> None:
        self._channels: list[tuple[socket.socket, TransportProto]] = []
        try:
            for groups, proto in ((_TCP_DESTROY_GROUPS, TransportProto.TCP),
                                  (_UDP_DESTROY_GROUPS, TransportProto.UDP)):
                channel = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
                self._channels.append((channel, proto))
                channel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                channel.bind((0, groups))
                channel.setblocking(False)
        except OSError:
            self.close()
            raise

    def drain(self) -> tuple[list[SocketRow], int]:
        """(the sockets freed since the last call, how many times announcements were lost)."""
        rows: list[SocketRow] = []
        lost = 0
        for channel, proto in self._channels:
            while True:
                try:
                    _parse_diag(channel.recv(1 << 16), rows, proto)
                except BlockingIOError:
                    break
                except OSError:  # ENOBUFS: the buffer overflowed, announcements were lost
                    lost += 1
                    if lost > 64:
                        break
        return rows, lost

    def close(self) -> None:
        for channel, _ in self._channels:
            channel.close()
        self._channels = []


def read_tcp_netlink() -> list[SocketRow]:
    """Every TCP socket of this network namespace, over netlink (``sock_diag``).

    Raises:
        OSError: netlink or ``inet_diag`` is not available.
    """
    rows: list[SocketRow] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as channel:
        for family in (socket.AF_INET, socket.AF_INET6):
            request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES)
            channel.send(_NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request),
                                            _SOCK_DIAG_BY_FAMILY, _NLM_F_DUMP_REQUEST, family, 0)
                         + request)
            while not _parse_diag(channel.recv(1 << 16), rows):
                pass
    return rows


def read_sockets(proc: Path = PROC, *, netlink: bool = True) -> list[SocketRow]:
    """Every TCP and UDP socket (IPv4 and IPv6) of this network namespace.

    ``netlink``: ask the kernel for TCP over netlink (falls back to ``/proc`` on error);
    only for the agent's own namespace (``proc`` is the real ``/proc``).
    """
    rows: list[SocketRow] = []
    tables: tuple[tuple[str, TransportProto], ...] = _TABLES
    if netlink and proc == PROC:
        try:
            rows = read_tcp_netlink()
            tables = _TABLES[2:]
        except (OSError, ValueError, struct.error):
            rows = []
    for name, proto in tables:
        try:
            lines = (proc / "net" / name).read_bytes().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split(None, 4)
            if len(parts) < 4:
                continue
            try:
                local_address, local_port = _endpoint(parts[1])
                remote_address, remote_port = _endpoint(parts[2])
                state = int(parts[3], 16)
            except (ValueError, UnicodeDecodeError):
                continue
            rows.append(SocketRow(proto, local_address, local_port, remote_address,
                                  remote_port, state))
    return rows


def _parse_stat(pid: int, data: bytes) -> ProcessRow | None:
    # The name is between the first "(" and the last ")" and may itself hold either.
    open_at, close_at = data.find(b"("), data.rfind(b")")
    if open_at < 0 or close_at < open_at:
        return None
    fields = data[close_at + 2:].split()
    try:
        # state is fields[0]: utime, stime and starttime are stat fields 14, 15 and 22
        cpu = int(fields[11]) + int(fields[12])
        start = int(fields[19])
    except (IndexError, ValueError):
        return None
    name = data[open_at + 1:close_at].decode("utf-8", "replace") or str(pid)
    return ProcessRow(pid, name, start, cpu)


def read_processes(proc: Path = PROC) -> list[ProcessRow]:
    """Every process (not thread) with its CPU time so far."""
    rows: list[ProcessRow] = []
    try:
        names = os.listdir(proc)
    except OSError:
        return rows
    for entry in names:
        if not entry.isdigit():
            continue
        try:  # os.open/os.read: a third of open()'s cost, and this runs for every process
            descriptor = os.open(f"{proc}/{entry}/stat", os.O_RDONLY)
            try:
                data = os.read(descriptor, 4096)
            finally:
                os.close(descriptor)
        except OSError:
            continue  # exited while we looked
        row = _parse_stat(int(entry), data)
        if row is not None:
            rows.append(row)
    return rows


def read_exe(pid: int, proc: Path = PROC) -> str | None:
    """The path of a process's executable; None for kernel threads or when not ours to read."""
    try:
        return os.readlink(f"{proc}/{pid}/exe") or None
    except OSError:
        return None


def ephemeral_ports(proc: Path = PROC) -> tuple[int, int]:
    """The range the kernel picks client ports from (``ip_local_port_range``)."""
    try:
        low, high = (proc / "sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def uptime_ticks(proc: Path = PROC) -> int | None:
    try:
        return int(float((proc / "uptime").read_text().split()[0]) * CLOCK_TICKS)
    except (OSError, ValueError, IndexError):
        return None


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
