"""Decommissioning a device: three domains in one transaction.

The registry records the final state, findings closes what no scan will match again, and
identity retires the device's credentials (tokens expire, certificates are revoked, the
CRLs are published). It lives here, not in one of them, so that no domain imports another
only to finish this flow.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fleetguard import findings
from fleetguard.core.clock import utcnow
from fleetguard.identity import service as identity
from fleetguard.pki import FleetCA
from fleetguard.registry import Device, DeviceState
from fleetguard.registry import service as registry


def decommission_device(
    session: Session, ca: FleetCA, *, device_id: str, actor: str, reason: str = ""
) -> Device:
    """Final: the device's certificates are revoked, its tokens die with it and its open
    findings are resolved (no scan will match it again to resolve them). Each step writes
    its own audit entries; the caller's session commits them together."""
    device = registry.set_device_state(session, device_id, DeviceState.DECOMMISSIONED,
                                       actor=actor, reason=reason)
    findings.close_findings_of_decommissioned_device(session, device.id, actor=actor,
                                                     now=utcnow())
    identity.retire_device_credentials(session, ca, device_id=device.id, actor=actor)
    return registry.get_device(session, device.id)
