"""Devices, their lifecycle and groups."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from fleetguard.core.errors import ValidationFailedError
from fleetguard.registry.errors import InvalidLabelQueryError


class DeviceState(StrEnum):
    REGISTERED = "registered"
    ACTIVE = "active"
    QUARANTINED = "quarantined"
    SUSPENDED = "suspended"
    DECOMMISSIONED = "decommissioned"


# registered -> active -> quarantined or suspended (and back) -> decommissioned (final)
ALLOWED_TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = {
    DeviceState.REGISTERED: frozenset({DeviceState.ACTIVE, DeviceState.DECOMMISSIONED}),
    DeviceState.ACTIVE: frozenset(
        {DeviceState.QUARANTINED, DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED}
    ),
    DeviceState.QUARANTINED: frozenset(
        {DeviceState.ACTIVE, DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED}
    ),
    DeviceState.SUSPENDED: frozenset(
        {DeviceState.ACTIVE, DeviceState.QUARANTINED, DeviceState.DECOMMISSIONED}
    ),
    DeviceState.DECOMMISSIONED: frozenset(),
}

# States in which a device's certificate still opens the channel.
TRUSTED_STATES = frozenset({DeviceState.REGISTERED, DeviceState.ACTIVE})


class GroupKind(StrEnum):
    STATIC = "static"
    DYNAMIC = "dynamic"


_LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9._:/@+ -]{0,200}$")


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > 64:
        raise ValidationFailedError("at most 64 labels per device", field="labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise ValidationFailedError(
                f"label key {key!r}: 1-63 of a-z, 0-9, '.', '_', '/', '-'", field="labels"
            )
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValidationFailedError(
                f"label {key!r}: value must be up to 200 printable characters", field="labels"
            )
    return dict(labels)


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """Labels written as ``key=value`` items (a CLI option each, a form's lines, a CSV
    cell's ``;``-separated parts), key and value stripped, blank items skipped."""
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in items)):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValidationFailedError(f"label {item!r} is not key=value", field="labels")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    op: str  # "=", "!=", "exists"
    value: str | None = None


def parse_label_query(query: str) -> list[LabelRequirement]:
    """``site=berlin,tier!=test,camera`` -> requirements that all must hold."""
    out: list[LabelRequirement] = []
    text = query.strip()
    if not text:
        raise InvalidLabelQueryError("label query is empty", field="label_query")
    if len(text) > 500:
        raise InvalidLabelQueryError("label query over 500 characters", field="label_query")
    for part in text.split(","):
        part = part.strip()
        if "!=" in part:
            key, value = (p.strip() for p in part.split("!=", 1))
            op = "!="
        elif "=" in part:
            key, value = (p.strip() for p in part.split("=", 1))
            op = "="
        else:
            key, value, op = part, "", "exists"
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise InvalidLabelQueryError(
                f"bad requirement {part!r}: use key=value, key!=value or key", field="label_query"
            )
        out.append(LabelRequirement(key, op, value if op != "exists" else None))
    return out


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    name: str
    serial: str | None
    hardware_model: str | None
    vendor: str | None
    labels: dict[str, str]
    state: DeviceState
    firmware_version: str | None
    last_seen_at: datetime | None
    addresses: list[str]
    groups: list[str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    state: DeviceState | None = None
    vendor: str | None = None
    search: str | None = None
    label_query: str | None = None
    group: str | None = None
    #: Only these devices (e.g. the offline ones, or those with an open finding, as other
    #: services name them); None means no such restriction, an empty set matches nothing.
    device_ids: frozenset[str] | None = None


class DeviceSort(StrEnum):
    """Orders of the device list; each is keyset-paginated on its columns plus the id."""

    REGISTERED = "registered"
    REGISTERED_DESC = "-registered"
    NAME = "name"
    NAME_DESC = "-name"
    STATE = "state"  # then by name
    STATE_DESC = "-state"


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[Device]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    name: str
    kind: GroupKind
    label_query: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceChanges:
    """Fields to change; None leaves a field as it is."""

    name: str | None = None
    serial: str | None = None
    hardware_model: str | None = None
    vendor: str | None = None
    firmware_version: str | None = None
    labels: dict[str, str] | None = None
    addresses: list[str] | None = None
    extra: dict[str, str] = field(default_factory=dict)
