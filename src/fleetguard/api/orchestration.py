"""What routers and pages ask of the running process, as small Protocols.

Starting a scan job or decommissioning a device is work that spans domains (and, for
scans, threads the process owns), so it lives in ``fleetguard.server``. The server builds
the objects and puts them in the :class:`~fleetguard.api.context.AppContext`; the API
only knows their shape, and so never imports the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from fleetguard.findings import Scan
from fleetguard.pki import FleetCA
from fleetguard.registry import Device
from fleetguard.scan import ScanOptions


class ScanLauncher(Protocol):
    """Scans the server runs itself (``server.scan_jobs.ScanJobs``)."""

    def scan_options(
        self, targets: Sequence[str], ports: str, options: Mapping[str, Any]
    ) -> ScanOptions:
        """Validated options for a server-run scan (422 on bad or out-of-scope targets)."""
        ...

    def start_scan(
        self, *, actor: str, targets: Sequence[str], ports: str, options: Mapping[str, Any],
    ) -> Scan:
        """Record a running scan and run it in the background (429 when at capacity)."""
        ...


class DeviceDecommission(Protocol):
    """Retire a device for good (``server.decommission.decommission_device``)."""

    def __call__(
        self, session: Session, ca: FleetCA, *, device_id: str, actor: str, reason: str = "",
    ) -> Device: ...
