"""Device ids as telemetry stores them, and peer addresses as the registry records them."""

from __future__ import annotations

import ipaddress
import re
import uuid

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_device_id(device_id: str) -> str:
    """As ``str(UUID)`` writes it (the MQTT topics' form). Raises ValueError if not a UUID."""
    if _CANONICAL_UUID.fullmatch(device_id):  # the common case, without building a UUID
        return device_id
    return str(uuid.UUID(device_id))


def ip_address_or_none(address: str | None) -> str | None:
    """The address as the registry records it; None for anything that is not an IP."""
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:  # e.g. a test transport's "testclient"
        return None
