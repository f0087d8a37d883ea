"""Match a scan's hosts to registered devices: by a serial a service disclosed, else by
address when exactly one device lists it (several: ambiguous, nothing is guessed)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from fleetguard.findings.models import MatchMethod
from fleetguard.findings.reconcile import ScannedHost
from fleetguard.registry import Device, lookup


def _choose(
    host: ScannedHost, by_serial: Mapping[str, Device], by_address: Mapping[str, list[Device]]
) -> tuple[Device | None, MatchMethod]:
    for serial in sorted(host.serials):
        if serial in by_serial:
            return by_serial[serial], MatchMethod.SERIAL
    candidates = by_address.get(host.address, [])
    if len(candidates) == 1:
        return candidates[0], MatchMethod.ADDRESS
    return None, MatchMethod.AMBIGUOUS if candidates else MatchMethod.UNMATCHED


def match_hosts(session: Session, hosts: Mapping[str, ScannedHost]) -> dict[str, Device]:
    """Give each host that answered a subject; returns the matched devices by id.

    Asks the registry only for the serials and addresses these hosts show."""
    up = [h for h in hosts.values() if h.up]
    if not up:
        return {}
    by_serial = lookup.devices_by_serial(session, {s for h in up for s in h.serials})
    by_address = lookup.devices_at_addresses(session, {h.address for h in up})
    devices: dict[str, Device] = {}
    for host in up:
        device, method = _choose(host, by_serial, by_address)
        host.claim(device.id if device else None, method)
        if device is not None:
            devices[device.id] = device
    return devices


__all__ = ["match_hosts"]
