"""Round trips and every rejection reason, for JSON and for CBOR."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest

from fleetguard.protocol import (
    MAX_CONNECTIONS,
    MAX_MESSAGE_BYTES,
    Command,
    CommandName,
    ContentType,
    MessageEncodeError,
    MessageKind,
    MessageRejectedError,
    RejectionCounter,
    RejectReason,
    TelemetryReport,
    decode_for_topic,
    decode_message,
    encode_message,
    from_millis,
    parse_content_type,
    to_millis,
)

from .samples import T0, all_messages, command, heartbeat, telemetry

BOTH = [ContentType.JSON, ContentType.CBOR]


def dump(obj: Any, content_type: ContentType) -> bytes:
    if content_type is ContentType.JSON:
        return json.dumps(obj).encode()
    return cbor2.dumps(obj)


def as_dict(message: Any) -> dict[str, Any]:
    return json.loads(encode_message(message, ContentType.JSON))


def rejected(data: bytes, content_type: ContentType | str, **kwargs: Any) -> RejectReason:
    with pytest.raises(MessageRejectedError) as caught:
        decode_message(data, content_type, **kwargs)
    return caught.value.reason


@pytest.mark.parametrize("content_type", BOTH)
@pytest.mark.parametrize("message", all_messages(), ids=lambda m: m.type)
def test_round_trip(message, content_type):
    data = encode_message(message, content_type)
    decoded = decode_message(data, content_type, expect=message.kind)
    assert decoded == message
    assert type(decoded) is type(message)


def test_cbor_is_smaller_than_json_and_leaves_out_none():
    report = telemetry()
    as_json = encode_message(report, ContentType.JSON)
    assert len(encode_message(report, ContentType.CBOR)) < len(as_json)
    assert b"null" not in as_json
    assert json.loads(as_json)["v"] == 1


def test_content_type_parameters_are_ignored():
    data = encode_message(heartbeat(), ContentType.JSON)
    assert decode_message(data, "Application/JSON; charset=utf-8") == heartbeat()
    assert parse_content_type("application/cbor") is ContentType.CBOR
    assert rejected(data, "text/plain") is RejectReason.UNSUPPORTED_CONTENT_TYPE


def test_timestamps_are_utc_milliseconds():
    moment = from_millis(T0)
    assert moment.tzinfo is not None and to_millis(moment) == T0
    with pytest.raises(ValueError, match="naive"):
        to_millis(moment.replace(tzinfo=None))
    assert telemetry().collected_at == from_millis(T0 + 300_000)


def test_encode_refuses_what_the_peer_would_refuse():
    with pytest.raises(MessageEncodeError):
        encode_message(telemetry(), ContentType.JSON, max_bytes=100)


@pytest.mark.parametrize("content_type", BOTH)
class TestRejections:
    def test_too_large_is_refused_before_parsing(self, content_type):
        data = b"\x00" * (MAX_MESSAGE_BYTES + 1)  # not even valid: the size decides first
        assert rejected(data, content_type) is RejectReason.TOO_LARGE
        small = encode_message(heartbeat(), content_type)
        assert rejected(small, content_type, max_bytes=len(small) - 1) is RejectReason.TOO_LARGE
        with pytest.raises(MessageRejectedError) as caught:
            decode_message(data, content_type)
        assert caught.value.http_status == 413 and caught.value.code == "message_rejected"

    def test_unknown_version(self, content_type):
        for version in (2, 0, "1", 1.0, True, None):
            raw = as_dict(heartbeat()) | {"v": version}
            assert rejected(dump(raw, content_type), content_type) is RejectReason.UNKNOWN_VERSION
        raw = as_dict(heartbeat())
        del raw["v"]
        assert rejected(dump(raw, content_type), content_type) is RejectReason.UNKNOWN_VERSION

    def test_a_future_version_with_a_new_kind_is_an_unknown_version(self, content_type):
        raw = {"v": 2, "type": "attestation", "quote": "..."}
        assert rejected(dump(raw, content_type), content_type) is RejectReason.UNKNOWN_VERSION

    def test_unknown_kind_and_missing_kind(self, content_type):
        raw = as_dict(heartbeat()) | {"type": "shell"}
        assert rejected(dump(raw, content_type), content_type) is RejectReason.UNKNOWN_KIND
        del raw["type"]
        assert rejected(dump(raw, content_type), content_type) is RejectReason.MALFORMED
        raw["type"] = 7
        assert rejected(dump(raw, content_type), content_type) is RejectReason.WRONG_TYPE

    def test_unexpected_kind_for_the_topic(self, content_type):
        data = encode_message(heartbeat(), content_type)
        reason = rejected(data, content_type, expect=MessageKind.TELEMETRY)
        assert reason is RejectReason.UNEXPECTED_KIND

    @pytest.mark.parametrize("name", ["reboot", "exec", "shell", "REPORT_NOW", ""])
    def test_unknown_command(self, content_type, name):
        raw = as_dict(command()) | {"name": name, "checks": None}
        del raw["checks"]
        assert rejected(dump(raw, content_type), content_type) is RejectReason.UNKNOWN_COMMAND

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("seq", "7"),
            ("seq", 7.0),
            ("seq", True),
            ("cpu_percent", "12.5"),
            ("boot_id", 12345),
            ("listening", {"port": 22}),
            ("interfaces", ["eth0"]),
            ("net", [1, 2]),
        ],
    )
    def test_wrong_types(self, content_type, field, value):
        raw = as_dict(telemetry()) | {field: value}
        assert rejected(dump(raw, content_type), content_type) is RejectReason.WRONG_TYPE

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("seq", -1),
            ("cpu_percent", 100.5),
            ("boot_id", "not-a-boot-id-not-a-boot-id-not-a-bo"),
            ("surprise", 1),  # unknown fields are refused, not ignored
        ],
    )
    def test_invalid_values(self, content_type, field, value):
        raw = as_dict(telemetry()) | {field: value}
        assert rejected(dump(raw, content_type), content_type) is RejectReason.INVALID

    def test_integers_past_64_bits(self, content_type):
        raw = as_dict(telemetry()) | {"seq": 2**64}
        # CBOR can only carry it as a bignum, a tag, and tags are not part of the protocol
        expected = RejectReason.INVALID if content_type is ContentType.JSON else RejectReason.MALFORMED
        assert rejected(dump(raw, content_type), content_type) is expected
        raw = as_dict(telemetry()) | {"seq": 2**64 - 1}
        assert decode_message(dump(raw, content_type), content_type).seq == 2**64 - 1

    def test_missing_field(self, content_type):
        raw = as_dict(telemetry())
        del raw["boot_id"]
        assert rejected(dump(raw, content_type), content_type) is RejectReason.INVALID

    def test_nan_and_infinity(self, content_type):
        if content_type is ContentType.JSON:
            data = encode_message(telemetry(), content_type).replace(b'"load_1":0.5', b'"load_1":NaN')
        else:
            data = cbor2.dumps(as_dict(telemetry()) | {"load_1": float("nan")})
        assert rejected(data, content_type) in {RejectReason.MALFORMED, RejectReason.INVALID}
        data = dump(as_dict(telemetry()) | {"load_1": 1e308 * 10}, content_type)
        assert rejected(data, content_type) in {RejectReason.MALFORMED, RejectReason.INVALID}

    def test_huge_list(self, content_type):
        port = {"proto": "tcp", "local_address": "10.0.0.1", "local_port": 1,
                "remote_address": "10.0.0.2", "remote_port": 2}
        raw = as_dict(telemetry()) | {"connections": [port] * (MAX_CONNECTIONS + 1)}
        data = dump(raw, content_type)
        assert len(data) < MAX_MESSAGE_BYTES
        assert rejected(data, content_type) is RejectReason.TOO_MANY_ITEMS
        flat = as_dict(telemetry()) | {"listening": [0] * 60_000}  # cheap items, many of them
        assert rejected(dump(flat, content_type), content_type) is RejectReason.TOO_MANY_ITEMS

    def test_long_string(self, content_type):
        raw = as_dict(telemetry()) | {"agent_version": "x" * 65}
        assert rejected(dump(raw, content_type), content_type) is RejectReason.STRING_TOO_LONG

    def test_deeply_nested_junk(self, content_type):
        for depth in (17, 50, 300, 100_000):
            nested: Any = 1
            if content_type is ContentType.JSON:
                data = b"[" * depth + b"1" + b"]" * depth
            else:
                data = b"\x81" * depth + b"\x01"
            assert rejected(data, content_type) is RejectReason.TOO_DEEP, depth
            del nested
        raw = as_dict(heartbeat()) | {"extra": [[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]}
        assert rejected(dump(raw, content_type), content_type) in {
            RejectReason.TOO_DEEP, RejectReason.INVALID,
        }

    def test_truncated(self, content_type):
        data = encode_message(telemetry(), content_type)
        for cut in (1, 2, len(data) // 2, len(data) - 1):
            assert rejected(data[:cut], content_type) is RejectReason.MALFORMED, cut
        assert rejected(b"", content_type) is RejectReason.MALFORMED

    def test_trailing_bytes(self, content_type):
        data = encode_message(heartbeat(), content_type)
        assert rejected(data + data, content_type) is RejectReason.MALFORMED

    def test_not_an_object(self, content_type):
        for value in ([1, 2], "telemetry", 7, None):
            assert rejected(dump(value, content_type), content_type) is RejectReason.MALFORMED


def test_cbor_tags_are_refused():
    import datetime
    import uuid

    for value in (uuid.uuid4(), datetime.datetime.now(datetime.UTC), 10**30):
        data = cbor2.dumps(as_dict(heartbeat()) | {"boot_id": value})
        assert rejected(data, ContentType.CBOR) is RejectReason.MALFORMED
    regex = cbor2.dumps(cbor2.CBORTag(35, "(a+)+$"))
    assert rejected(regex, ContentType.CBOR) is RejectReason.MALFORMED


def test_cbor_structural_tricks_are_refused():
    raw = as_dict(heartbeat())
    good = cbor2.dumps(raw)
    duplicate = b"\xa2\x61v\x01\x61v\x02"
    indefinite = b"\xbf\x61v\x01\xff"
    int_keys = cbor2.dumps({1: 2})
    huge_header = b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00"  # an array of 2**32 items, no items
    for data in (duplicate, indefinite, int_keys, huge_header):
        assert rejected(data, ContentType.CBOR) is RejectReason.MALFORMED
    bytes_field = cbor2.dumps(raw | {"boot_id": raw["boot_id"].encode()})
    assert rejected(bytes_field, ContentType.CBOR) is RejectReason.WRONG_TYPE
    assert decode_message(good, ContentType.CBOR) == heartbeat()


def test_invalid_json_text():
    for data in (b"{", b'{"v":1,}', b"\xff\xfe", b'{"v":1,"type":"heartbeat","agent_version":"\\ud800"}'):
        assert rejected(data, ContentType.JSON) is RejectReason.MALFORMED


def test_command_arguments_must_fit_the_command():
    raw = as_dict(command()) | {"name": CommandName.REPORT_NOW.value}
    assert rejected(dump(raw, ContentType.JSON), ContentType.JSON) is RejectReason.INVALID
    expired_before_issued = as_dict(command()) | {"expires_at_ms": T0 - 1}
    data = dump(expired_before_issued, ContentType.CBOR)
    assert rejected(data, ContentType.CBOR) is RejectReason.INVALID
    assert Command(id="x", name=CommandName.REPORT_NOW, issued_at_ms=T0).checks is None


def test_messages_are_immutable():
    report = telemetry()
    with pytest.raises(ValueError, match="frozen"):
        report.seq = 8  # type: ignore[misc]


def test_decode_for_topic_checks_the_kind_against_the_topic():
    device = "0d5c3a52-8a3f-4b41-9d2e-7f8b6c5a4e3d"
    data = encode_message(telemetry(), ContentType.CBOR)
    where, message = decode_for_topic(f"fg/d/{device}/telemetry", data, ContentType.CBOR)
    assert str(where.device_id) == device and isinstance(message, TelemetryReport)
    with pytest.raises(MessageRejectedError) as caught:
        decode_for_topic(f"fg/d/{device}/heartbeat", data, ContentType.CBOR)
    assert caught.value.reason is RejectReason.UNEXPECTED_KIND


def test_rejections_are_counted_by_reason():
    counter = RejectionCounter()
    for data in (b"{", b"[1]", json.dumps({"v": 9}).encode(), b"{" * 10):
        try:
            decode_message(data, ContentType.JSON)
        except MessageRejectedError as exc:
            counter.record(exc)
    assert counter.total == 4
    assert counter[RejectReason.MALFORMED] == 3
    assert counter.snapshot()[RejectReason.UNKNOWN_VERSION] == 1


def test_error_text_never_echoes_the_payload():
    secret = "s3cr3t-" * 20
    raw = as_dict(heartbeat()) | {secret: 1, "agent_version": secret}
    with pytest.raises(MessageRejectedError) as caught:
        decode_message(dump(raw, ContentType.JSON), ContentType.JSON)
    assert secret not in str(caught.value)
