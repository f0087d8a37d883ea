"""What detection needs to know of a device from the registry: its groups (static members
and dynamic groups whose label query its labels meet), when it was registered, its model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from fleetguard.registry import DeviceFilter, GroupKind
from fleetguard.registry import groups as registry_groups
from fleetguard.registry.listing import browse_devices
from fleetguard.registry.models import LabelRequirement, parse_label_query

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    groups: tuple[str, ...]
    registered_ms: int
    hardware_model: str | None
    loaded_at: float  # monotonic seconds, for the cache's time to live


def _meets(labels: dict[str, str], requirements: Sequence[LabelRequirement]) -> bool:
    for req in requirements:
        value = labels.get(req.key)
        if req.op == "exists" and value is None:
            return False
        if req.op == "=" and value != req.value:
            return False
        if req.op == "!=" and value == req.value:
            return False
    return True


def device_facts(session: Session, device_ids: Iterable[str], now: float) -> dict[str, DeviceFacts]:
    """Facts of the registered devices among ``device_ids`` (an unknown id is left out)."""
    wanted = sorted(set(device_ids))
    if not wanted:
        return {}
    dynamic = [(g.name, parse_label_query(g.label_query))
               for g in registry_groups.list_groups(session)
               if g.kind is GroupKind.DYNAMIC and g.label_query]
    out: dict[str, DeviceFacts] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = frozenset(wanted[start:start + _CHUNK])
        page = browse_devices(session, DeviceFilter(device_ids=chunk), limit=_CHUNK)
        for device in page.devices:
            groups = {*device.groups,
                      *(name for name, reqs in dynamic if _meets(device.labels, reqs))}
            out[device.id] = DeviceFacts(
                groups=tuple(sorted(groups)),
                registered_ms=int(device.created_at.timestamp() * 1000),
                hardware_model=device.hardware_model, loaded_at=now)
    return out


__all__ = ["DeviceFacts", "device_facts"]
