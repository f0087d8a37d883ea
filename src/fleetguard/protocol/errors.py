"""Errors of the device channel's wire format.

    FleetError                          (fleetguard.core.errors)
    └── InvalidRequestError
        └── ProtocolError               anything wrong with a message on the device channel
            ├── MessageRejectedError    an incoming message or topic was refused; ``.reason``
            │                           is a stable :class:`RejectReason`, counted per device
            └── MessageEncodeError      an outgoing message would break the protocol's limits
                                        (a bug on the sending side, never the peer's fault)

``MessageRejectedError.reason`` is the value to count and to show; the message text is
for people and never echoes the payload (it names the field, not its content).
"""

from __future__ import annotations

from enum import StrEnum

from fleetguard.core.errors import InvalidRequestError


class RejectReason(StrEnum):
    """Why an incoming message was refused. Wire values are stable (pinned by a test)."""

    TOO_LARGE = "too_large"  # the whole message is over the byte limit
    TOO_DEEP = "too_deep"  # containers nested deeper than any valid message
    TOO_MANY_ITEMS = "too_many_items"  # a list is over its item limit
    STRING_TOO_LONG = "string_too_long"  # a string is over its length limit
    MALFORMED = "malformed"  # not valid JSON/CBOR, trailing bytes, not an object, no type
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    UNKNOWN_VERSION = "unknown_version"  # "v" missing or not a version this side speaks
    UNKNOWN_KIND = "unknown_kind"  # "type" is not a message kind of this version
    UNEXPECTED_KIND = "unexpected_kind"  # a valid kind, but not the one this topic carries
    UNKNOWN_COMMAND = "unknown_command"  # a command outside the allowed set
    WRONG_TYPE = "wrong_type"  # a field has the wrong type (a string for a number, ...)
    INVALID = "invalid"  # a field is missing, unknown, or out of range
    BAD_TOPIC = "bad_topic"  # the MQTT topic is not fg/d/<canonical uuid>/<kind>


class ProtocolError(InvalidRequestError):
    code = "protocol_error"


class MessageRejectedError(ProtocolError):
    """An incoming message was refused; ``reason`` says why, in a stable word."""

    code = "message_rejected"

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        if reason is RejectReason.TOO_LARGE:
            self.http_status = 413
        elif reason is RejectReason.UNSUPPORTED_CONTENT_TYPE:
            self.http_status = 415
        else:
            self.http_status = 422


class MessageEncodeError(ProtocolError):
    code = "message_encode_failed"
