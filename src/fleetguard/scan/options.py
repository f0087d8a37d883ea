"""What a scan is asked to do, validated once at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetguard.scan.errors import InvalidScanOptionError
from fleetguard.scan.models import PortSpec, Target


@dataclass(frozen=True, slots=True)
class ScanOptions:
    targets: tuple[Target, ...]
    ports: tuple[PortSpec, ...]
    target_expressions: tuple[str, ...] = ()
    timeout: float = 1.5  # seconds, per connect / per answer
    concurrency: int = 1024  # simultaneous probes in total
    host_concurrency: int = 32  # simultaneous probes per host
    rate: float = 200.0  # new probes per second per host (0 = unlimited)
    credentials: bool = True  # False: never attempt a login (nor SNMP communities)
    max_logins: int = 10  # login attempts per host and service
    login_delay: float = 0.25  # seconds between two attempts on the same host and service
    credentials_file: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.targets:
            raise InvalidScanOptionError("no target to scan", field="targets")
        if not self.ports:
            raise InvalidScanOptionError("no port to scan", field="ports")
        _range("timeout", self.timeout, 0.05, 120)
        _range("concurrency", self.concurrency, 1, 20000)
        _range("host_concurrency", self.host_concurrency, 1, 4096)
        _range("rate", self.rate, 0, 1_000_000)
        _range("max_logins", self.max_logins, 0, 10_000)
        _range("login_delay", self.login_delay, 0, 60)

    def summary(self) -> dict[str, object]:
        return {
            "ports": len(self.ports),
            "timeout": self.timeout,
            "concurrency": self.concurrency,
            "host_concurrency": self.host_concurrency,
            "rate": self.rate,
            "credentials": self.credentials,
            "max_logins": self.max_logins,
            "login_delay": self.login_delay,
        }


def _range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise InvalidScanOptionError(
            f"{name} must be between {lo:g} and {hi:g}, got {value:g}", field=name
        )


__all__ = ["ScanOptions"]
