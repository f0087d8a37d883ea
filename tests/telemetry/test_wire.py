"""Ingestion's decoder (msgspec, types derived from the protocol's models) agrees with the codec.

For every input: the same facts are stored, or the same reason is given for refusing it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Annotated, Any

import cbor2
import msgspec
import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleetguard.protocol import (
    ContentType,
    Heartbeat,
    MessageKind,
    MessageRejectedError,
    RejectReason,
    TelemetryReport,
    decode_message,
    encode_message,
)
from fleetguard.sim import DeviceModel, Profile
from fleetguard.telemetry import HeartbeatFacts, ReportFacts, _wire
from fleetguard.telemetry._plan import message_facts
from fleetguard.telemetry._wire import (
    DerivationError,
    HeartbeatStruct,
    TelemetryStruct,
    check_patterns,
    decode_ingest_message,
    derive_struct,
)
from tests.protocol import samples

BOTH = [ContentType.JSON, ContentType.CBOR]
T0 = 1_790_000_000_000


def outcome(
    data: bytes, content_type: str, kind: MessageKind, *, fast: bool
) -> ReportFacts | HeartbeatFacts | RejectReason:
    try:
        if fast:
            return message_facts(decode_ingest_message(data, content_type, kind))
        message = decode_message(data, content_type, expect=kind)
        assert isinstance(message, TelemetryReport | Heartbeat)
        return message_facts(message)
    except MessageRejectedError as exc:
        return exc.reason


def assert_agree(data: bytes, content_type: str, kind: MessageKind) -> None:
    expected = outcome(data, content_type, kind, fast=False)
    assert outcome(data, content_type, kind, fast=True) == expected, data[:300]


def encode(raw: object, content_type: ContentType) -> bytes:
    if content_type is ContentType.JSON:
        return json.dumps(raw).encode()
    return cbor2.dumps(raw)


def sim_reports() -> list[TelemetryReport]:
    out = []
    for i, profile in enumerate([Profile.CAMERA, Profile.SENSOR, Profile.GATEWAY]):
        model = DeviceModel(index=i, profile=profile, rng=random.Random(i), now_ms=T0)
        out.extend(model.report(T0 + r * 1000) for r in range(3))
    return out


def seeds() -> list[TelemetryReport | Heartbeat]:
    return [samples.telemetry(), samples.heartbeat(), *sim_reports()]


def kind_of(message: TelemetryReport | Heartbeat) -> MessageKind:
    return MessageKind.TELEMETRY if isinstance(message, TelemetryReport) else MessageKind.HEARTBEAT


# Values put in place of every field of the seeds, in turn.
REPLACEMENTS: list[object] = [
    None, True, False, 0, -1, 1, 1.0, 1.5, -0.0, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1,
    2**64, 10**30, 1e18, 1e19, "", "x", "x" * 65, "x" * 129, "é" * 64, "😀" * 33, "tcp", "TCP",
    "10.0.0.1", "10.0.0.1\n", "fe80::1%eth0", "fe80::1%%eth0", "a" * 64, "A" * 64,
    "3f0e5a8c-2b1d-4e6f-9a7b-0c1d2e3f4a5b", [], [1], {}, {"x": 1}, "telemetry", "heartbeat",
]
DELETE = object()


def paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:2]):
            yield (*prefix, index)
            yield from paths(inner, (*prefix, index))


def replaced(raw: Any, path: tuple[Any, ...], value: object) -> Any:
    out = json.loads(json.dumps(raw))
    holder = out
    for part in path[:-1]:
        holder = holder[part]
    if value is DELETE:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return out


@pytest.mark.parametrize("content_type", BOTH)
def test_valid_messages_take_the_fast_path_with_the_same_facts(content_type):
    for message in seeds():
        data = encode_message(message, content_type)
        kind = kind_of(message)
        decoded = decode_ingest_message(data, content_type, kind)
        assert isinstance(decoded, TelemetryStruct | HeartbeatStruct)
        assert message_facts(decoded) == message_facts(message)


def test_socket_lists_are_stored_as_the_models_would_write_them():
    for report in [*sim_reports(), samples.telemetry()]:
        fast = message_facts(decode_ingest_message(
            encode_message(report, ContentType.JSON), ContentType.JSON, MessageKind.TELEMETRY))
        assert isinstance(fast, ReportFacts)
        assert fast.snapshot == (
            json.dumps([s.model_dump(mode="json", exclude_none=True) for s in report.listening],
                       separators=(",", ":"), ensure_ascii=False),
            json.dumps([c.model_dump(mode="json", exclude_none=True) for c in report.connections],
                       separators=(",", ":"), ensure_ascii=False),
        )


@pytest.mark.parametrize("content_type", BOTH)
def test_every_field_replaced_or_removed_gives_the_codecs_outcome(content_type):
    for message in (samples.telemetry(), samples.heartbeat(), sim_reports()[-1]):
        raw = json.loads(encode_message(message, ContentType.JSON))
        kind = kind_of(message)
        for path in paths(raw):
            for value in [*REPLACEMENTS, DELETE]:
                assert_agree(encode(replaced(raw, path, value), content_type), content_type, kind)
        assert_agree(encode({**raw, "extra": 1}, content_type), content_type, kind)


@pytest.mark.parametrize("content_type", BOTH)
def test_messages_of_another_kind_get_the_codecs_reason(content_type):
    report = encode_message(samples.telemetry(), content_type)
    beat = encode_message(samples.heartbeat(), content_type)
    command = encode_message(samples.command(), content_type)
    for data, kind in [(report, MessageKind.HEARTBEAT), (beat, MessageKind.TELEMETRY),
                       (command, MessageKind.TELEMETRY)]:
        assert outcome(data, content_type, kind, fast=True) is RejectReason.UNEXPECTED_KIND
        assert_agree(data, content_type, kind)


def test_json_corner_cases_give_the_codecs_outcome():
    good = encode_message(samples.telemetry(), ContentType.JSON)
    cases = [
        good[:-1] + b', "seq": 5}',  # a duplicate key: the last one counts on both sides
        good[:-1] + b', "uptime_s": NaN}',
        good[:-1] + b', "uptime_s": Infinity}',
        good[:-1] + b', "uptime_s": 1e400}',
        good + b" \n",
        b"\xef\xbb\xbf" + good,
        good.replace(b'"0.1.0"', b'"\\ud800"'),
        good.replace(b'"0.1.0"', b'"\\u0000"'),
        good.replace(b'"seq": 7', b'"seq": 007'),
        good.replace(b'"seq": 7', b'"seq": 7e0'),
        b"[]", b"null", b"{}", b"",
    ]
    for data in cases:
        assert_agree(data, ContentType.JSON, MessageKind.TELEMETRY)


@pytest.mark.parametrize("content_type", BOTH)
def test_mutated_bytes_give_the_codecs_outcome(content_type):
    rng = random.Random(5150)
    seed = encode_message(samples.telemetry(), content_type)
    for _ in range(1500):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[pos] = rng.randrange(256)
            else:
                del data[pos : pos + rng.randint(1, 8)]
        assert_agree(bytes(data), content_type, MessageKind.TELEMETRY)


def test_an_oversized_message_is_refused_as_too_large():
    data = b" " * (256 * 1024) + encode_message(samples.telemetry(), ContentType.JSON)
    assert outcome(data, "application/json", MessageKind.TELEMETRY, fast=True) is (
        RejectReason.TOO_LARGE)


def test_an_unsupported_content_type_is_refused_as_such():
    data = encode_message(samples.telemetry(), ContentType.JSON)
    assert outcome(data, "text/plain", MessageKind.TELEMETRY, fast=True) is (
        RejectReason.UNSUPPORTED_CONTENT_TYPE)


def test_a_counter_beyond_int64_is_still_accepted_through_the_models():
    report = samples.telemetry(memory_total_bytes=2**64 - 1)
    data = encode_message(report, ContentType.JSON)
    decoded = decode_ingest_message(data, ContentType.JSON, MessageKind.TELEMETRY)
    assert isinstance(decoded, TelemetryReport)  # the struct's bound stops at int64
    assert message_facts(decoded) == message_facts(report)


def test_a_pattern_end_anchor_does_not_take_a_trailing_newline():
    raw = json.loads(encode_message(samples.telemetry(), ContentType.JSON))
    raw["connections"][0]["remote_address"] += "\n"
    decoded = msgspec.json.decode(json.dumps(raw).encode(), type=TelemetryStruct)
    with pytest.raises(msgspec.ValidationError):
        check_patterns(decoded)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def test_a_constraint_the_derivation_does_not_know_stops_it():
    class Stepped(_Strict):
        n: Annotated[int, Field(multiple_of=5)]

    with pytest.raises(DerivationError, match="multiple_of"):
        derive_struct(Stepped)


def test_a_float_the_model_keeps_finite_is_derived_only_with_both_bounds():
    class Finite(_Strict):
        model_config = ConfigDict(allow_inf_nan=False)
        x: float

    class Bounded(Finite):
        x: Annotated[float, Field(ge=0.0, le=1.0)]  # type: ignore[mutable-override]

    with pytest.raises(DerivationError, match="both bounds"):
        derive_struct(Finite)
    struct = derive_struct(Bounded)
    for value in (float("inf"), float("nan")):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"x": value}, struct, strict=True)


def test_a_model_with_a_validator_is_not_derived():
    class Checked(_Strict):
        n: int

        @field_validator("n")
        @classmethod
        def _positive(cls, value: int) -> int:
            return value

    with pytest.raises(DerivationError, match="validators"):
        derive_struct(Checked)


def test_a_lax_field_is_not_derived():
    class Lax(_Strict):
        n: int = Field(strict=False)

    with pytest.raises(DerivationError, match="lax"):
        derive_struct(Lax)


def test_an_open_model_is_not_derived():
    class Open(BaseModel):
        n: int

    with pytest.raises(DerivationError, match="closed"):
        derive_struct(Open)


def test_strings_remembered_as_matching_stay_within_their_bound(monkeypatch):
    monkeypatch.setattr(_wire, "_REMEMBERED", 8)
    connection = samples.telemetry().connections[0]
    for i in range(40):
        report = samples.telemetry(connections=[
            connection.model_copy(update={"remote_address": f"198.51.100.{i}"})])
        data = encode_message(report, ContentType.JSON)
        decoded = decode_ingest_message(data, ContentType.JSON, MessageKind.TELEMETRY)
        assert isinstance(decoded, TelemetryStruct)
    assert all(len(check.passed) <= 8 for checks in _wire._CHECKS.values()
               for _, check in checks.own)


def test_an_address_that_does_not_match_is_refused_however_many_have_matched():
    for report in sim_reports():
        decode_ingest_message(encode_message(report, ContentType.JSON), ContentType.JSON,
                              MessageKind.TELEMETRY)
    raw = json.loads(encode_message(samples.telemetry(), ContentType.JSON))
    raw["connections"][0]["remote_address"] = "10.0.0.1 "
    assert outcome(json.dumps(raw).encode(), ContentType.JSON, MessageKind.TELEMETRY,
                   fast=True) is RejectReason.INVALID


def test_patterns_inside_an_optional_list_are_checked():
    raw = json.loads(encode_message(samples.telemetry(), ContentType.JSON))
    good = {"proto": "tcp", "address": "203.0.113.5", "port": 443, "samples": 1, "connections": 1}
    raw["destinations_seen"] = [good]
    assert isinstance(outcome(json.dumps(raw).encode(), ContentType.JSON, MessageKind.TELEMETRY,
                              fast=True), ReportFacts)
    raw["destinations_seen"] = [good, {**good, "address": "not an address"}]
    assert outcome(json.dumps(raw).encode(), ContentType.JSON, MessageKind.TELEMETRY,
                   fast=True) is RejectReason.INVALID
