"""Parse what to scan: targets (addresses, CIDRs, ranges, hostnames) and port specs.

Targets:
    192.0.2.7            one IPv4 address          2001:db8::7      one IPv6 address
    192.0.2.0/28         a CIDR (v4 or v6); network and broadcast of a v4 /0-/30 are skipped
    192.0.2.10-20        a range in the last octet 192.0.2.10-192.0.2.20   a full range
    camera.lan           a hostname: every address it resolves to

``@targets.txt`` (one target per line) is the CLI's convenience, expanded on the
operator's machine by ``expand_target_files`` before anything is parsed: a target that
reaches ``parse_targets`` never names a file, so nothing sent to the server can make it
read one.

Ports (nmap style): ``default``, ``23,80-90``, ``T:23,U:161``; a ``T:``/``U:`` prefix
sets the transport for the items that follow it; ``default`` adds the IoT default set.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from fleetguard.core.errors import excerpt
from fleetguard.protocol.models import TransportProto
from fleetguard.scan.errors import InvalidPortSpecError, InvalidTargetError, ScanScopeTooLargeError
from fleetguard.scan.models import PortSpec, Target

DEFAULT_MAX_ADDRESSES = 65_536

#: The IoT-focused default: telnet, SSH, FTP, web admin, RTSP, MQTT, TR-069, DVR/camera ports.
DEFAULT_TCP_PORTS: tuple[int, ...] = (
    21,  # ftp
    22,  # ssh
    23,  # telnet
    80,  # http
    81,  # http (cameras, DVRs)
    443,  # https
    554,  # rtsp
    1883,  # mqtt
    2323,  # telnet (alternative, Mirai targets it)
    5000,  # http (NAS, UPnP control)
    5555,  # adb / debug bridges
    7547,  # TR-069 CWMP
    8000,  # http (Hikvision SDK / DVR web)
    8080,  # http
    8081,  # http
    8443,  # https
    8554,  # rtsp (alternative)
    8883,  # mqtt over TLS
    8888,  # http
    9000,  # DVR web / NVR
    34567,  # Xiongmai DVR (XMEye)
    37777,  # Dahua DVR
    49152,  # UPnP control
)
DEFAULT_UDP_PORTS: tuple[int, ...] = (161, 1900, 5353, 5683)

_RANGE_LAST_OCTET = re.compile(r"^(\d{1,3}\.\d{1,3}\.\d{1,3}\.)(\d{1,3})-(\d{1,3})$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def default_ports() -> list[PortSpec]:
    return [PortSpec(p, TransportProto.TCP) for p in DEFAULT_TCP_PORTS] + [
        PortSpec(p, TransportProto.UDP) for p in DEFAULT_UDP_PORTS
    ]


def parse_ports(spec: str) -> list[PortSpec]:
    """Parse a port spec; raises InvalidPortSpecError with the offending item."""
    if not spec or not spec.strip():
        raise InvalidPortSpecError("empty port specification", field="ports")
    out: dict[tuple[int, TransportProto], PortSpec] = {}
    transport = TransportProto.TCP
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise InvalidPortSpecError(
                f"empty item in port specification {excerpt(spec)}", field="ports"
            )
        upper = item[:2].upper()
        if upper in ("T:", "U:"):
            transport = TransportProto.TCP if upper == "T:" else TransportProto.UDP
            item = item[2:].strip()
        if item.lower() == "default":
            for p in default_ports():
                out[(p.port, p.transport)] = p
            continue
        first, last = _port_range(item, raw)
        for port in range(first, last + 1):
            out[(port, transport)] = PortSpec(port, transport)
    return sorted(out.values(), key=lambda p: (p.transport.value, p.port))


def _port_range(item: str, raw: str) -> tuple[int, int]:
    """``23`` or ``8000-8100`` as (first, last), each within 1-65535."""
    lo, sep, hi = item.partition("-")
    try:
        first = int(lo)
        last = int(hi) if sep else first
    except ValueError:
        raise InvalidPortSpecError(
            f"not a port or port range: {excerpt(raw.strip())} (use e.g. 23, 8000-8100, U:161)",
            field="ports",
        ) from None
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        raise InvalidPortSpecError(
            f"port out of range 1-65535: {excerpt(raw.strip())}", field="ports"
        )
    if last < first:
        raise InvalidPortSpecError(
            f"reversed port range: {excerpt(raw.strip())}", field="ports"
        )
    return first, last


def _expand_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterable[str]:
    if isinstance(net, ipaddress.IPv4Network) and net.prefixlen <= 30:
        return (str(a) for a in net.hosts())
    return (str(a) for a in net)


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidTargetError(
            f"cannot resolve host name {excerpt(name)}: {exc}", field="targets"
        ) from None
    seen: dict[str, None] = {}
    for info in infos:
        addr = str(info[4][0]).split("%", 1)[0]
        seen.setdefault(addr, None)
    return list(seen)


def _expand_one(item: str, budget: int) -> list[Target]:
    try:
        return [Target(str(ipaddress.ip_address(item)))]
    except ValueError:
        pass
    if "/" in item:
        return _expand_cidr(item, budget)
    if bounds := _range_bounds(item):
        return _expand_range(item, *bounds, budget)
    if _HOSTNAME.match(item) and not item.replace(".", "").isdigit():
        return [Target(a, name=item.rstrip(".")) for a in _resolve(item)]
    raise InvalidTargetError(
        f"not an address, CIDR, range or host name: {excerpt(item)}", field="targets"
    )


def _expand_cidr(item: str, budget: int) -> list[Target]:
    try:
        net = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise InvalidTargetError(
            f"not a valid CIDR network: {excerpt(item)}", field="targets"
        ) from None
    size = net.num_addresses
    if size > budget:
        raise ScanScopeTooLargeError(
            f"{item} has {size} addresses, more than the {budget} still allowed "
            "(raise --max-addresses if you really mean it)",
            field="targets",
        )
    return [Target(a) for a in _expand_network(net)]


def _range_bounds(item: str) -> tuple[str, str] | None:
    """The two ends of an address range (``a.b.c.1-20`` or ``first-last``), if it is one."""
    if m := _RANGE_LAST_OCTET.match(item):
        prefix, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
        return prefix + str(lo), prefix + str(hi)
    if item.count("-") == 1 and _looks_like_address_range(item):
        first, last = (s.strip() for s in item.split("-"))
        return first, last
    if item.count("-") == 1 and not _HOSTNAME.match(item):
        raise InvalidTargetError(f"not a valid address range: {excerpt(item)}", field="targets")
    return None


def _expand_range(item: str, first_s: str, last_s: str, budget: int) -> list[Target]:
    try:
        first = ipaddress.ip_address(first_s)
        last = ipaddress.ip_address(last_s)
    except ValueError:
        raise InvalidTargetError(
            f"not a valid address range: {excerpt(item)}", field="targets"
        ) from None
    if first.version != last.version or int(last) < int(first):
        raise InvalidTargetError(f"not a valid address range: {excerpt(item)}", field="targets")
    count = int(last) - int(first) + 1
    if count > budget:
        raise ScanScopeTooLargeError(
            f"{item} has {count} addresses, more than the {budget} still allowed",
            field="targets",
        )
    cls = type(first)
    return [Target(str(cls(int(first) + i))) for i in range(count)]


def _looks_like_address_range(item: str) -> bool:
    a, _, b = item.partition("-")
    try:
        ipaddress.ip_address(a.strip())
        ipaddress.ip_address(b.strip())
    except ValueError:
        return False
    return True


def expand_target_files(items: Iterable[str]) -> list[str]:
    """The CLI's ``@file`` items replaced by the targets listed in each file.

    One target per line, blank lines and ``#`` comments ignored. For the operator's own
    machine only: the server never calls this, and ``parse_targets`` refuses ``@``.
    """
    out: list[str] = []
    for item in items:
        item = item.strip()
        if not item.startswith("@"):
            out.append(item)
            continue
        path_s = item[1:]
        try:
            text = Path(path_s).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidTargetError(
                f"cannot read target file {path_s!r}: {exc.strerror or exc}", field="targets"
            ) from None
        except UnicodeDecodeError:
            raise InvalidTargetError(
                f"target file {path_s!r} is not UTF-8 text", field="targets"
            ) from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.extend(line.split())
    return out


def parse_targets(
    items: Iterable[str], *, max_addresses: int = DEFAULT_MAX_ADDRESSES
) -> list[Target]:
    """Expand target expressions into unique addresses, in the order given."""
    raw: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item.startswith("@"):
            raise InvalidTargetError(
                f"not a target: {excerpt(item)} (target files are read by the CLI only; "
                "send the targets themselves)",
                field="targets",
            )
        raw.append(item)
    if not raw:
        raise InvalidTargetError("no target given", field="targets")
    seen: dict[str, Target] = {}
    for item in raw:
        for t in _expand_one(item, max_addresses - len(seen)):
            if t.address not in seen or (t.name and not seen[t.address].name):
                seen[t.address] = t
        if len(seen) > max_addresses:
            raise ScanScopeTooLargeError(
                f"targets expand to more than {max_addresses} addresses", field="targets"
            )
    return list(seen.values())


__all__ = [
    "DEFAULT_MAX_ADDRESSES",
    "DEFAULT_TCP_PORTS",
    "DEFAULT_UDP_PORTS",
    "default_ports",
    "expand_target_files",
    "parse_ports",
    "parse_targets",
]
