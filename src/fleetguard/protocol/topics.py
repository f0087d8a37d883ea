"""MQTT topics of the device channel: ``fg/d/<uuid>/<kind>``.

    fg/d/<uuid>/telemetry      device -> server   TelemetryReport
    fg/d/<uuid>/heartbeat      device -> server   Heartbeat
    fg/d/<uuid>/cmd            server -> device   Command
    fg/d/<uuid>/cmd/result     device -> server   CommandResult

The uuid must be in canonical form (lowercase, hyphenated), so one device has exactly
one spelling and broker permissions written for it cannot be sidestepped with another.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from fleetguard.protocol.errors import MessageRejectedError, RejectReason
from fleetguard.protocol.models import MessageKind

TOPIC_PREFIX = "fg/d/"
_MAX_TOPIC_CHARS = 128
_UUID_CHARS = 36


class TopicKind(StrEnum):
    """The last part of a device topic. Wire values are stable (pinned by a test)."""

    TELEMETRY = "telemetry"
    HEARTBEAT = "heartbeat"
    COMMAND = "cmd"
    COMMAND_RESULT = "cmd/result"


_MESSAGE_KIND = {
    TopicKind.TELEMETRY: MessageKind.TELEMETRY,
    TopicKind.HEARTBEAT: MessageKind.HEARTBEAT,
    TopicKind.COMMAND: MessageKind.COMMAND,
    TopicKind.COMMAND_RESULT: MessageKind.COMMAND_RESULT,
}
_TOPIC_KINDS = {kind.value: kind for kind in TopicKind}


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    device_id: UUID
    kind: TopicKind

    @property
    def topic(self) -> str:
        return device_topic(self.device_id, self.kind)

    @property
    def message_kind(self) -> MessageKind:
        return _MESSAGE_KIND[self.kind]


def device_topic(device_id: UUID, kind: TopicKind) -> str:
    return f"{TOPIC_PREFIX}{device_id}/{kind.value}"


def subscription(kind: TopicKind, device_id: UUID | None = None) -> str:
    """A subscription filter: one device's topic, or every device's (``fg/d/+/<kind>``)."""
    return f"{TOPIC_PREFIX}{'+' if device_id is None else device_id}/{kind.value}"


def parse_topic(topic: str) -> DeviceTopic:
    """Split a concrete device topic into the device id and the kind.

    Raises:
        MessageRejectedError: reason ``bad_topic``, for anything but the four forms above.
    """
    if not isinstance(topic, str) or len(topic) > _MAX_TOPIC_CHARS:
        raise MessageRejectedError(RejectReason.BAD_TOPIC, "not a device topic")
    if not topic.startswith(TOPIC_PREFIX):
        raise MessageRejectedError(RejectReason.BAD_TOPIC, f"does not start with {TOPIC_PREFIX}")
    rest = topic[len(TOPIC_PREFIX) :]
    text, slash, tail = rest[:_UUID_CHARS], rest[_UUID_CHARS : _UUID_CHARS + 1], rest[37:]
    try:
        device_id = UUID(text)
    except ValueError:
        raise MessageRejectedError(RejectReason.BAD_TOPIC, "no device uuid") from None
    if str(device_id) != text or slash != "/":
        raise MessageRejectedError(RejectReason.BAD_TOPIC, "the uuid is not in canonical form")
    kind = _TOPIC_KINDS.get(tail)
    if kind is None:
        raise MessageRejectedError(RejectReason.BAD_TOPIC, "unknown topic kind")
    return DeviceTopic(device_id, kind)


def message_kind_for(kind: TopicKind) -> MessageKind:
    return _MESSAGE_KIND[kind]
