"""The device registry: inventory, lifecycle states, groups."""

from fleetguard.registry.models import (
    TRUSTED_STATES,
    Device,
    DeviceChanges,
    DeviceFilter,
    DeviceGroup,
    DevicePage,
    DeviceSort,
    DeviceState,
    GroupKind,
)

__all__ = [
    "TRUSTED_STATES",
    "Device",
    "DeviceChanges",
    "DeviceFilter",
    "DeviceGroup",
    "DevicePage",
    "DeviceSort",
    "DeviceState",
    "GroupKind",
]
