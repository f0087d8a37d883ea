"""MQTT's variable byte integers, as both small MQTT clients read and write them."""

from __future__ import annotations

import pytest

from fleetguard.protocol.mqtt_wire import (
    MalformedVariableIntError,
    decode_varint,
    encode_varint,
    packet,
)


@pytest.mark.parametrize("value, encoded", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_variable_byte_integers_match_the_specification_examples(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(b"x" + encoded + b"rest", 1, 1 + len(encoded) + 4) == (value, 1 + len(encoded))


def test_a_variable_byte_integer_cut_short_is_not_there_yet() -> None:
    assert decode_varint(b"\x30\xff\xff", 1, 3) is None


def test_a_variable_byte_integer_past_four_bytes_is_malformed() -> None:
    with pytest.raises(MalformedVariableIntError):
        decode_varint(b"\x30\xff\xff\xff\xff\x01", 1, 6)


def test_a_packet_is_its_first_byte_remaining_length_and_body() -> None:
    assert packet(0xC0, b"") == b"\xc0\x00"
    assert packet(0x30, b"a" * 200) == b"\x30\xc8\x01" + b"a" * 200
