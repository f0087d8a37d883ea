"""Which networks the scans this server runs may reach (API, dashboard and schedules).

Inside a scope a target must be written as an address, a CIDR or a range: a host name is
refused before anything resolves it, since the lookup is itself traffic and what it would
resolve to is unknown beforehand. The API fuzzer confines scans to loopback with this
(tests/security/fuzz_support.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleetguard.core.errors import ValidationFailedError, excerpt
from fleetguard.scan import ScanOptions

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ScanScope:
    networks: tuple[Network, ...]

    @classmethod
    def of(cls, networks: Iterable[str]) -> ScanScope:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def _contains(self, first: Address, last: Address) -> bool:
        return any(
            net.version == first.version == last.version and first in net and last in net
            for net in self.networks
        )

    def check_targets(self, targets: Sequence[str]) -> None:
        """422 for a target that is not a literal inside the scope (before any lookup)."""
        allowed = ", ".join(str(n) for n in self.networks)
        for raw in targets:
            item = raw.strip()
            if not item:
                continue
            bounds = _literal_bounds(item)
            if bounds is None:
                raise ValidationFailedError(
                    f"target {excerpt(item)}: this server scans only addresses, networks or "
                    f"ranges within {allowed}", field="targets",
                )  # fmt: skip
            if not self._contains(*bounds):
                raise ValidationFailedError(
                    f"target {excerpt(item)} is outside what this server may scan ({allowed})",
                    field="targets",
                )

    def check_options(self, options: ScanOptions) -> None:
        """422 for an expanded target address outside the scope."""
        for target in options.targets:
            address = ipaddress.ip_address(target.address)
            if not self._contains(address, address):
                raise ValidationFailedError(
                    f"target {target.address} is outside what this server may scan",
                    field="targets",
                )


def _literal_bounds(item: str) -> tuple[Address, Address] | None:
    """First and last address of an address, CIDR or range expression; None otherwise."""
    try:
        net = ipaddress.ip_network(item, strict=False)
    except ValueError:
        pass
    else:
        return net[0], net[-1]
    left, sep, right = item.partition("-")
    if not sep:
        return None
    try:
        first = ipaddress.ip_address(left.strip())
        right = right.strip()
        last: Address
        if right.isdigit() and len(right) <= 3 and first.version == 4:
            last = ipaddress.ip_address(str(first).rsplit(".", 1)[0] + "." + right)
        else:
            last = ipaddress.ip_address(right)
    except ValueError:
        return None
    return first, last
