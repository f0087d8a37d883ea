"""Whatever bytes arrive, decoding either returns a message or raises MessageRejectedError."""

from __future__ import annotations

import random

import cbor2
import pytest

from fleetguard.protocol import (
    ContentType,
    MessageRejectedError,
    RejectReason,
    decode_message,
    encode_message,
)

from .samples import all_messages

BOTH = [ContentType.JSON, ContentType.CBOR]


def _decode_or_reject(data: bytes, content_type: ContentType) -> None:
    try:
        decode_message(data, content_type)
    except MessageRejectedError as exc:
        assert isinstance(exc.reason, RejectReason)


def _mutations(rng: random.Random, seed: bytes, count: int):
    for _ in range(count):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            action = rng.randrange(5)
            pos = rng.randrange(len(data)) if data else 0
            if action == 0 and data:
                data[pos] = rng.randrange(256)
            elif action == 1:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
            elif action == 2:
                del data[pos : pos + rng.randint(1, 16)]
            elif action == 3:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                chunk = data[pos : pos + rng.randint(1, 64)]
                data[pos:pos] = chunk * rng.randint(1, 50)
        yield bytes(data)


@pytest.mark.parametrize("content_type", BOTH)
def test_random_bytes_only_ever_reject(content_type):
    rng = random.Random(20240917)
    for _ in range(3000):
        size = rng.choice((0, 1, 2, 5, 17, 100, 1000))
        _decode_or_reject(rng.randbytes(size), content_type)


@pytest.mark.parametrize("content_type", BOTH)
def test_mutated_messages_only_ever_reject(content_type):
    rng = random.Random(4242)
    for message in all_messages():
        seed = encode_message(message, content_type)
        for data in _mutations(rng, seed, 600):
            _decode_or_reject(data, content_type)


def test_random_cbor_values_only_ever_reject():
    rng = random.Random(7)

    def value(depth: int):
        pick = rng.randrange(12 if depth < 6 else 7)
        simple = [
            lambda: rng.randint(-(2**70), 2**70),
            lambda: float(f"{rng.random()}e{rng.randint(-5, 400)}"),
            lambda: rng.randbytes(rng.randint(0, 20)),
            lambda: "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 20))),
            lambda: rng.choice([None, True, False, float("nan"), cbor2.undefined]),
            lambda: rng.choice(["v", "type", "telemetry", "command", "name", "report_now"]),
            lambda: rng.choice([1, 2, 0, -1]),
        ]
        if pick < len(simple):
            return simple[pick]()
        if pick < 9:
            return [value(depth + 1) for _ in range(rng.randint(0, 5))]
        keys = ["v", "type", "name", "seq", "id", "checks", "x"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 6))}

    for _ in range(3000):
        doc = value(0)
        if rng.random() < 0.5:
            doc = {"v": 1, "type": rng.choice(["telemetry", "heartbeat", "command", "command_result"])}
            doc.update({rng.choice(["name", "seq", "id", "checks", "boot_id"]): value(1)})
        try:
            data = cbor2.dumps(doc)
        except (ValueError, TypeError, cbor2.CBOREncodeError):
            continue
        _decode_or_reject(data, ContentType.CBOR)


hypothesis = pytest.importorskip("hypothesis")


@hypothesis.settings(max_examples=400, deadline=None, derandomize=True)
@hypothesis.given(data=hypothesis.strategies.binary(max_size=512))
def test_hypothesis_bytes_only_ever_reject(data):
    for content_type in BOTH:
        _decode_or_reject(data, content_type)
