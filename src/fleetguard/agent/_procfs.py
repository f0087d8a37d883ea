"""Small readers of Linux /proc files. Each returns None when the file is not there."""

from __future__ import annotations

import re
from pathlib import Path

PROC = Path("/proc")
_BOOT_ID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$")


def read_boot_id(proc: Path = PROC) -> str | None:
    try:
        text = (proc / "sys/kernel/random/boot_id").read_text().strip().lower()
    except OSError:
        return None
    return text if _BOOT_ID.match(text) else None


def read_uptime(proc: Path = PROC) -> float | None:
    try:
        return float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_snmp(proc: Path = PROC) -> dict[str, int]:
    """``/proc/net/snmp`` as {"Tcp.ActiveOpens": n, ...} plus ``snmp6``'s "Udp6InDatagrams"."""
    counters: dict[str, int] = {}
    try:
        lines = (proc / "net/snmp").read_text().splitlines()
    except OSError:
        lines = []
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = header.partition(":")
        vgroup, _, numbers = values.partition(":")
        if group != vgroup:
            continue
        for name, number in zip(names.split(), numbers.split(), strict=False):
            try:
                counters[f"{group}.{name}"] = int(number)
            except ValueError:
                continue
    try:
        for line in (proc / "net/snmp6").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counters[parts[0]] = int(parts[1])
    except OSError:
        pass
    return counters
