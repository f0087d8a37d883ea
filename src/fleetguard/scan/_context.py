"""What every probe gets: the host's network handle, the options, and sinks for results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from fleetguard.protocol.models import TransportProto
from fleetguard.protocol.scan_report import ReportFinding, ReportNote
from fleetguard.scan._net import HostNet
from fleetguard.scan.checks import CheckId, check_info
from fleetguard.scan.credentials import Credential
from fleetguard.scan.models import Service, ServiceInfo, Severity
from fleetguard.scan.options import ScanOptions


@dataclass(slots=True)
class LoginBudget:
    """Attempts left for one host and service; attempts are spaced by ``delay``."""

    left: int
    delay: float
    used: int = 0
    _last: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def attempts(self, candidates: Iterable[Credential]) -> AsyncIterator[Credential]:
        for cred in candidates:
            async with self.lock:
                if self.left <= 0:
                    return
                self.left -= 1
                self.used += 1
                loop = asyncio.get_running_loop()
                wait = self._last + self.delay - loop.time()
                if self._last and wait > 0:
                    await asyncio.sleep(wait)
                self._last = loop.time()
            yield cred


@dataclass(slots=True)
class ProbeContext:
    net: HostNet
    options: ScanOptions
    credentials: tuple[Credential, ...]
    findings: list[ReportFinding] = field(default_factory=list)
    notes: list[ReportNote] = field(default_factory=list)
    budgets: dict[str, LoginBudget] = field(default_factory=dict)

    @property
    def timeout(self) -> float:
        return self.net.timeout

    def budget(self, service: Service, port: int | None = None) -> LoginBudget:
        """Per host and service (and per port for SNMP, whose guesses are sent blind)."""
        key = "http" if service is Service.HTTPS else service.value
        if port is not None:
            key = f"{key}:{port}"
        if key not in self.budgets:
            self.budgets[key] = LoginBudget(self.options.max_logins, self.options.login_delay)
        return self.budgets[key]

    def finding(
        self,
        info: ServiceInfo,
        check: CheckId,
        evidence: str,
        *,
        severity: Severity | None = None,
        title: str | None = None,
    ) -> None:
        c = check_info(check)
        self.findings.append(
            ReportFinding(
                host=self.net.address,
                port=info.port,
                protocol=info.transport,
                service=info.service.value,
                check=c.id.value,
                severity=severity or c.severity,
                title=title or c.title,
                evidence=evidence,
                remediation=c.remediation,
                references=c.references,
            )
        )

    def note(self, port: int, transport: TransportProto, check: str, reason: str) -> None:
        self.notes.append(ReportNote(
            host=self.net.address, port=port, protocol=transport, check=str(check),
            reason=reason[:2000],  # (an error's text can be long; the format bounds it)
        ))  # fmt: skip
