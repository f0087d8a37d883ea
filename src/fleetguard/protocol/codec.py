"""Encode and decode messages as JSON or CBOR, bounded before and during parsing.

Order of checks on the way in (the first failure decides the reason):

1. the byte length, before anything is parsed (``too_large``);
2. parsing, with nesting bounded by the parser (``too_deep``) and, for CBOR, no tags,
   no indefinite lengths, no duplicate or non-string keys, no trailing bytes
   (``malformed``);
3. the envelope: an object with a supported ``"v"`` (``unknown_version``) and a known
   ``"type"`` (``unknown_kind``); for commands, a name in the allowed set
   (``unknown_command``);
4. the schema: list and string limits (``too_many_items``, ``string_too_long``), field
   types (``wrong_type``), everything else (``invalid``).

JSON is validated straight from the bytes by pydantic's parser; the envelope checks of
step 3 read a plain parse only when validation has already failed, so a good message is
parsed once. Duplicate keys in JSON keep the last value (both sides use the same rule).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import Any, NoReturn

import cbor2
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from fleetguard.protocol.errors import MessageEncodeError, MessageRejectedError, RejectReason
from fleetguard.protocol.models import (
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    SUPPORTED_VERSIONS,
    CommandName,
    Message,
    MessageKind,
)
from fleetguard.protocol.topics import DeviceTopic, parse_topic


class ContentType(StrEnum):
    JSON = "application/json"
    CBOR = "application/cbor"


_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)
_KINDS = frozenset(MessageKind)
_COMMANDS = frozenset(CommandName)
_WRONG_TYPE_ERRORS = frozenset(
    {"model_type", "model_attributes_type", "dict_type", "list_type", "int_from_float"}
)


def parse_content_type(value: str) -> ContentType:
    """``application/json`` or ``application/cbor``, parameters (``; charset=...``) ignored."""
    base = value.split(";", 1)[0].strip().lower()
    if base == ContentType.JSON:
        return ContentType.JSON
    if base == ContentType.CBOR:
        return ContentType.CBOR
    raise MessageRejectedError(
        RejectReason.UNSUPPORTED_CONTENT_TYPE, "expected application/json or application/cbor"
    )


def encode_message(
    message: Message,
    content_type: ContentType | str = ContentType.CBOR,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> bytes:
    """Serialize a message; fields that are None are left out.

    Raises:
        MessageEncodeError: the encoded message is over ``max_bytes``.
    """
    kind = parse_content_type(content_type)
    if kind is ContentType.JSON:
        data = _ADAPTER.dump_json(message, exclude_none=True)
    else:
        data = cbor2.dumps(_ADAPTER.dump_python(message, mode="json", exclude_none=True))
    if len(data) > max_bytes:
        raise MessageEncodeError(
            f"{message.type} message is {len(data)} bytes, over the limit of {max_bytes}"
        )
    return data


def decode_message(
    data: bytes,
    content_type: ContentType | str,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    expect: MessageKind | None = None,
) -> Message:
    """Parse and validate one message; ``expect`` refuses any other kind.

    Raises:
        MessageRejectedError: with a stable ``reason``; nothing else escapes for any input.
    """
    kind = parse_content_type(content_type)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageRejectedError(RejectReason.MALFORMED, "a message is bytes")
    if len(data) > max_bytes:
        raise MessageRejectedError(
            RejectReason.TOO_LARGE, f"{len(data)} bytes, over the limit of {max_bytes}"
        )
    decode = _decode_json if kind is ContentType.JSON else _decode_cbor
    message = decode(bytes(data))
    if "v" not in message.model_fields_set:  # a default fills it in Python, never on the wire
        raise MessageRejectedError(RejectReason.UNKNOWN_VERSION, "'v' is missing")
    if expect is not None and message.type != expect:
        raise MessageRejectedError(
            RejectReason.UNEXPECTED_KIND, f"expected a {expect.value} message, got {message.type}"
        )
    return message


def decode_for_topic(
    topic: str,
    data: bytes,
    content_type: ContentType | str,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> tuple[DeviceTopic, Message]:
    """Parse the topic, then a message of the kind that topic carries."""
    parsed = parse_topic(topic)
    message = decode_message(data, content_type, max_bytes=max_bytes, expect=parsed.message_kind)
    return parsed, message


class RejectionCounter:
    """Counts refused messages by reason (one per device, or one per ingestion worker)."""

    def __init__(self) -> None:
        self._counts: Counter[RejectReason] = Counter()

    def record(self, error: MessageRejectedError) -> None:
        self._counts[error.reason] += 1

    def __getitem__(self, reason: RejectReason) -> int:
        return self._counts[reason]

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def snapshot(self) -> dict[RejectReason, int]:
        return dict(self._counts)


# -- internals ------------------------------------------------------------------------


def _decode_json(data: bytes) -> Message:
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            if "recursion limit" in errors[0]["msg"]:
                raise MessageRejectedError(RejectReason.TOO_DEEP, "nested too deeply") from None
            raise MessageRejectedError(RejectReason.MALFORMED, "not valid JSON") from None
        _reject(lambda: json.loads(data), errors)


def _decode_cbor(data: bytes) -> Message:
    raw = parse_cbor(data)
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        _reject(lambda: raw, exc.errors(include_input=False, include_url=False))


def parse_cbor(data: bytes) -> Any:
    """One CBOR item, as the protocol allows it (step 2 above), not yet validated.

    Raises:
        MessageRejectedError: ``malformed`` or ``too_deep``.
    """
    stream = io.BytesIO(data)
    try:
        raw = cbor2.CBORDecoder(
            stream,
            tag_hook=_refuse_tag,
            semantic_decoders=_RefuseAllTags(),
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        ).decode()
    except (cbor2.CBORError, ValueError, TypeError, EOFError, OverflowError) as exc:
        if "nesting depth" in str(exc):
            raise MessageRejectedError(RejectReason.TOO_DEEP, "nested too deeply") from None
        raise MessageRejectedError(RejectReason.MALFORMED, "not valid CBOR for a message") from None
    except RecursionError:
        raise MessageRejectedError(RejectReason.TOO_DEEP, "nested too deeply") from None
    if stream.tell() != len(data):
        raise MessageRejectedError(RejectReason.MALFORMED, "trailing bytes after the message")
    return raw


def _refuse_tag(decoder: object, tag: object) -> NoReturn:
    raise ValueError("CBOR tags are not part of the protocol")


def _refuse_decoder(decoder: object) -> NoReturn:
    raise ValueError("CBOR tags are not part of the protocol")


class _RefuseAllTags(Mapping[int, Callable[[Any], Any]]):
    """Replaces every semantic decoder cbor2 knows (dates, regexes, MIME, ...)."""

    def __getitem__(self, tag: int) -> Callable[[Any], Any]:
        return _refuse_decoder

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _reject(load_raw: Callable[[], object], errors: list[ErrorDetails]) -> NoReturn:
    try:
        raw = load_raw()
    except (ValueError, RecursionError):
        raw = None
    if _deeper_than(raw, MAX_DEPTH):
        raise MessageRejectedError(RejectReason.TOO_DEEP, "nested too deeply") from None
    reason, text = _envelope_problem(raw) or _schema_problem(errors)
    raise MessageRejectedError(reason, text) from None


def _deeper_than(raw: object, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (JSON's parser allows far more)."""
    level: list[object] = [raw]
    for _ in range(limit + 1):
        below: list[object] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if not below:
            return False
        level = below
    return True


def _envelope_problem(raw: object) -> tuple[RejectReason, str] | None:
    if not isinstance(raw, dict):
        return RejectReason.MALFORMED, "a message is an object (a map)"
    version = raw.get("v")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        return RejectReason.UNKNOWN_VERSION, "'v' is missing or not a supported version"
    kind = raw.get("type")
    if kind is None:
        return RejectReason.MALFORMED, "'type' is missing"
    if type(kind) is not str:
        return RejectReason.WRONG_TYPE, "'type' is not a string"
    if kind not in _KINDS:
        return RejectReason.UNKNOWN_KIND, "'type' is not a message kind of this version"
    name = raw.get("name")
    if kind == MessageKind.COMMAND and type(name) is str and name not in _COMMANDS:
        return RejectReason.UNKNOWN_COMMAND, "not one of " + ", ".join(sorted(_COMMANDS))
    return None


def _schema_problem(errors: list[ErrorDetails]) -> tuple[RejectReason, str]:
    if not errors:
        return RejectReason.INVALID, "the message does not fit the schema"
    first = errors[0]
    error_type = first["type"]
    # The first location element is the union tag (the message kind): leave it out.
    where = ".".join(_safe_loc(part) for part in first["loc"][1:]) or "message"
    if error_type == "too_long":
        return RejectReason.TOO_MANY_ITEMS, f"{where}: too many items"
    if error_type == "string_too_long":
        return RejectReason.STRING_TOO_LONG, f"{where}: string too long"
    if error_type.endswith("_type") or error_type in _WRONG_TYPE_ERRORS:
        return RejectReason.WRONG_TYPE, f"{where}: wrong type ({error_type})"
    return RejectReason.INVALID, f"{where}: {error_type}"


def _safe_loc(part: int | str) -> str:
    text = str(part)
    return text if len(text) <= 40 and text.isprintable() else repr(text[:40])
