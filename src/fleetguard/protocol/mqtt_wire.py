"""MQTT's wire encodings (MQTT 3.1.1 and 5.0, section 1.5), for fleetguard's two small MQTT
clients: the simulator's devices (``fleetguard.sim.mqtt``) and the platform's ingest
session (``fleetguard.telemetry._mqtt5``)."""

from __future__ import annotations

import struct


class MalformedVariableIntError(ValueError):
    """A variable byte integer that runs past its four bytes."""


def encode_varint(n: int) -> bytes:
    """A variable byte integer: 7 bits a byte, least significant first."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_varint(data: bytes | bytearray, at: int, end: int) -> tuple[int, int] | None:
    """The variable byte integer at ``at``: its value and where it ends, or None when the
    data (up to ``end``) stops before it does.

    Raises:
        MalformedVariableIntError: it runs past four bytes.
    """
    value, shift = 0, 0
    for i in range(at, at + 4):
        if i >= end:
            return None
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise MalformedVariableIntError("a variable byte integer over four bytes")


def utf8_field(text: str) -> bytes:
    """A UTF-8 string field: its length in two bytes, then the bytes."""
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    """A control packet: type and flags, the remaining length, the rest."""
    return bytes([first_byte]) + encode_varint(len(body)) + body
