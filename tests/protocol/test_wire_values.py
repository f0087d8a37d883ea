"""Wire values never change once published: this test pins every one of them."""

from __future__ import annotations

import fleetguard.protocol as protocol
from fleetguard.protocol import (
    CheckStatus,
    CommandName,
    CommandStatus,
    ContentType,
    MessageKind,
    RejectReason,
    TopicKind,
    TransportProto,
)


def values(enum) -> list[str]:
    return [member.value for member in enum]


def test_pinned_wire_values():
    assert protocol.PROTOCOL_VERSION == 1
    assert values(MessageKind) == ["telemetry", "heartbeat", "command", "command_result"]
    assert values(CommandName) == ["report_now", "rotate_certificate", "run_checks"]
    assert values(CommandStatus) == ["ok", "failed", "rejected"]
    assert values(CheckStatus) == ["pass", "fail", "error", "not_applicable"]
    assert values(TransportProto) == ["tcp", "udp"]
    assert values(TopicKind) == ["telemetry", "heartbeat", "cmd", "cmd/result"]
    assert values(ContentType) == ["application/json", "application/cbor"]
    assert values(RejectReason) == [
        "too_large", "too_deep", "too_many_items", "string_too_long", "malformed",
        "unsupported_content_type", "unknown_version", "unknown_kind", "unexpected_kind",
        "unknown_command", "wrong_type", "invalid", "bad_topic",
    ]


def test_message_classes_carry_their_kind():
    for cls, kind in [
        (protocol.TelemetryReport, MessageKind.TELEMETRY),
        (protocol.Heartbeat, MessageKind.HEARTBEAT),
        (protocol.Command, MessageKind.COMMAND),
        (protocol.CommandResult, MessageKind.COMMAND_RESULT),
    ]:
        assert cls.model_fields["type"].default == kind.value


def test_limits_of_version_1():
    assert protocol.MAX_MESSAGE_BYTES == 256 * 1024
    assert (protocol.MAX_LISTENING, protocol.MAX_CONNECTIONS) == (512, 1024)
    assert (protocol.MAX_INTERFACES, protocol.MAX_DISKS, protocol.MAX_NEW_EXECUTABLES) == (64, 32, 64)
    assert (protocol.MAX_DESTINATIONS_SEEN, protocol.MAX_LISTENERS_OPENED,
            protocol.MAX_PROCESSES) == (256, 64, 64)


def test_errors_derive_from_the_project_root():
    from fleetguard.core.errors import FleetError, InvalidRequestError

    assert issubclass(protocol.MessageRejectedError, InvalidRequestError)
    assert issubclass(protocol.MessageEncodeError, FleetError)


def test_exported_names():
    import types

    public = {
        name for name, value in vars(protocol).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(protocol.__all__) == sorted(public)
