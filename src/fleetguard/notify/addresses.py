"""Where notifications may go: the SSRF rules for operator-given URLs and hosts.

A destination is operator input, and the server sits inside the network it protects, so:

* never, whatever the flags: link-local addresses (169.254.0.0/16, fe80::/10, which hold
  the cloud metadata services), the other known metadata addresses (fd00:ec2::254,
  100.100.100.200, 168.63.129.16), unspecified, multicast, broadcast and reserved ranges;
* private and loopback addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, 127/8,
  ::1) only for a webhook whose ``allow_private_network`` flag the admin set, and for
  syslog (a SIEM's collector usually lives on the private network; a syslog line reads
  nothing back);
* every address a name resolves to is checked, and the connection goes to the checked
  address (never to a second resolution), so DNS rebinding cannot slip past the check.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from fleetguard.notify.errors import AddressRefusedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
UNRESOLVABLE = "destination_unresolvable"
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in effect
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)


def _unwrapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 one, else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def never_reason(address: IPAddress) -> str | None:
    """Why fleetguard never sends to ``address``, or None (an IPv4 address carried in an
    IPv6 one is judged as itself)."""
    candidate = _unwrapped(address)
    if candidate in _METADATA:
        return "a cloud metadata address"
    if candidate.is_link_local:
        return "link-local (where cloud metadata services live)"
    if candidate.is_unspecified:
        return "unspecified"
    if candidate.is_multicast:
        return "multicast"
    if candidate.is_reserved and not candidate.is_loopback:  # ::1 lies in reserved ::/8
        return "reserved"
    return None


def is_private(address: IPAddress) -> bool:
    inner = _unwrapped(address)
    return inner.is_private or inner.is_loopback or (
        isinstance(inner, ipaddress.IPv4Address) and inner in _SHARED)


def check_address(address: IPAddress, *, allow_private: bool, field: str) -> None:
    """Refuse ``address`` (AddressRefusedError naming ``field``) if it is not allowed."""
    reason = never_reason(address)
    if reason is not None:
        raise AddressRefusedError(f"{address} is {reason}: never a destination", field=field)
    if not allow_private and is_private(address):
        raise AddressRefusedError(
            f"{address} is a private or loopback address; set allow_private_network to "
            "send there", field=field,
        )  # fmt: skip


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an address when it is one, in the C library's forms too ("0", "127.1",
    "0x7f.1", "2130706433"), which a resolver would take as addresses, never as names."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def resolve_checked(
    host: str, port: int, *, allow_private: bool, field: str = "host"
) -> list[IPAddress]:
    """Every address ``host`` resolves to, each checked; refused if any one is refused
    (a name that also points inside is not trusted for its other addresses)."""
    literal = literal_address(host)
    if literal is not None:
        check_address(literal, allow_private=allow_private, field=field)
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressRefusedError(f"{host[:100]!r} does not resolve ({exc})", field=field,
                                  code=UNRESOLVABLE) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    for address in addresses:
        check_address(address, allow_private=allow_private, field=field)
    return addresses


def first_connectable(
    addresses: Sequence[IPAddress], port: int, timeout: float
) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers."""
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:
            last = exc
    raise last or OSError("no address to connect to")


__all__ = [
    "UNRESOLVABLE",
    "IPAddress",
    "check_address",
    "first_connectable",
    "is_private",
    "literal_address",
    "never_reason",
    "resolve_checked",
]
