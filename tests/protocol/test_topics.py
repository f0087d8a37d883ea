from __future__ import annotations

import uuid

import pytest

from fleetguard.protocol import (
    DeviceTopic,
    MessageKind,
    MessageRejectedError,
    RejectReason,
    TopicKind,
    device_topic,
    message_kind_for,
    parse_topic,
    subscription,
)

DEVICE = uuid.UUID("0d5c3a52-8a3f-4b41-9d2e-7f8b6c5a4e3d")


@pytest.mark.parametrize("kind", list(TopicKind))
def test_topics_round_trip(kind):
    topic = device_topic(DEVICE, kind)
    assert topic == f"fg/d/{DEVICE}/{kind.value}"
    assert parse_topic(topic) == DeviceTopic(DEVICE, kind)
    assert parse_topic(topic).topic == topic


def test_topic_kinds_map_to_message_kinds():
    assert message_kind_for(TopicKind.COMMAND) is MessageKind.COMMAND
    assert parse_topic(f"fg/d/{DEVICE}/cmd/result").message_kind is MessageKind.COMMAND_RESULT
    assert parse_topic(f"fg/d/{DEVICE}/telemetry").message_kind is MessageKind.TELEMETRY


def test_subscriptions():
    assert subscription(TopicKind.TELEMETRY) == "fg/d/+/telemetry"
    assert subscription(TopicKind.COMMAND, DEVICE) == f"fg/d/{DEVICE}/cmd"


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "fg/d/",
        f"fg/d/{DEVICE}",
        f"fg/d/{DEVICE}/",
        f"fg/d/{DEVICE}/shell",
        f"fg/d/{DEVICE}/cmd/result/x",
        f"fg/d/{DEVICE}/telemetry/",
        f"fg/d/{str(DEVICE).upper()}/telemetry",  # one spelling per device
        f"fg/d/{DEVICE.hex}/telemetry",
        f"fg/d/{{{DEVICE}}}/telemetry",
        f"fg/d/urn:uuid:{DEVICE}/telemetry",
        "fg/d/+/telemetry",
        "fg/d/#",
        f"fg/x/{DEVICE}/telemetry",
        f"/fg/d/{DEVICE}/telemetry",
        f"fg/d/{DEVICE}/telemetry\x00",
        f"fg/d/{DEVICE}x/telemetry",
        "fg/d/" + "a" * 500,
    ],
)
def test_bad_topics_are_refused(topic):
    with pytest.raises(MessageRejectedError) as caught:
        parse_topic(topic)
    assert caught.value.reason is RejectReason.BAD_TOPIC
