"""Build fleetguard.scan/1 report documents for tests, the way the scanner writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

SEVERITY_OF = {
    "default-credentials": "critical",
    "no-authentication": "high",
    "cleartext-protocol": "high",
    "tls-self-signed-certificate": "low",
    "service-exposed": "info",
    "snmp-default-community": "high",
}


def finding(host: str, port: int, check: str, *, protocol: str = "tcp", service: str = "telnet",
            severity: str | None = None, evidence: str = "seen") -> dict[str, Any]:
    return {
        "host": host, "port": port, "protocol": protocol, "service": service, "check": check,
        "severity": severity or SEVERITY_OF.get(check, "medium"), "title": f"{check} on {service}",
        "evidence": evidence, "remediation": "fix it", "references": ["ETSI EN 303 645 5.1-1"],
    }


def host(address: str, *, up: bool = True, open_ports: tuple[tuple[str, int, str], ...] = (),
         silent: tuple[tuple[str, int], ...] = (), serial: str | None = None) -> dict[str, Any]:
    services = [
        {"port": port, "protocol": proto, "service": svc, "product": None, "version": None,
         "tls": False}
        for proto, port, svc in open_ports
    ]
    if serial:
        services.append({"port": 1900, "protocol": "udp", "service": "upnp", "product": "cam",
                         "version": None, "tls": False, "extra": {"serialNumber": serial}})
    ports = [{"port": port, "protocol": proto, "state": "open"} for proto, port, _ in open_ports]
    ports += [{"port": port, "protocol": proto, "state": "filtered", "reason": "timeout"}
              for proto, port in silent]
    return {
        "address": address, "hostname": None, "status": "up" if up else "no-response",
        "services": services, "ports": ports,
        "counts": {"open": len(open_ports), "closed": 0, "filtered": len(silent), "open|filtered": 0},
    }


def report(hosts: list[dict[str, Any]], findings: list[dict[str, Any]], *,
           credentials: bool = True, notes: list[dict[str, Any]] | None = None,
           targets: list[str] | None = None, port_count: int = 27) -> dict[str, Any]:
    started = datetime.now(UTC)
    return {
        "schema": "fleetguard.scan/1",
        "targets": targets or [h["address"] for h in hosts],
        "started": started.isoformat(),
        "finished": (started + timedelta(seconds=2)).isoformat(),
        "options": {"ports": port_count, "timeout": 1.5, "concurrency": 1024, "host_concurrency": 32,
                    "rate": 200.0, "credentials": credentials, "max_logins": 10,
                    "login_delay": 0.25},
        "hosts": hosts,
        "findings": findings,
        "notes": notes or [],
    }
