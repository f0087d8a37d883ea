"""The messages ingestion takes, decoded by msgspec into types derived from the protocol's models.

The pydantic models in :mod:`fleetguard.protocol` are the schema, and
:func:`fleetguard.protocol.decode_message` the authority on what is refused and why. At
thousands of reports a second, building a report's pydantic model (about 150 objects for
a gateway) was the platform's largest single cost, so ingestion first decodes with msgspec
into structs derived here, field by field, from those models: same names, types, bounds,
lengths, patterns and defaults; unknown fields refused; ``v`` and ``type`` required, as
the codec requires them on the wire.

The derived types must accept nothing the models refuse (``tests/telemetry/test_wire.py``
holds this on valid, mutated and generated messages, JSON and CBOR). Whatever they refuse
goes to ``decode_message``, which gives the reason, or, should the models take it after
all, the message. A model feature the derivation does not know stops the import: a new
constraint can never be silently skipped.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.types import Strict

from fleetguard.protocol import (
    MAX_MESSAGE_BYTES,
    ContentType,
    Heartbeat,
    MessageKind,
    TelemetryReport,
    decode_message,
    parse_content_type,
)
from fleetguard.protocol.codec import parse_cbor

# Fields that have a default in Python but that the codec requires on the wire.
_REQUIRED_ON_WIRE = frozenset({"v", "type"})
_INT64_MAX = 2**63 - 1


class DerivationError(TypeError):
    """A model uses a type or constraint the derivation does not translate."""


def derive_struct(model: type[BaseModel]) -> type[msgspec.Struct]:
    """A msgspec struct that accepts what ``model`` accepts from JSON, field for field."""
    return _derive_struct(model)


@cache
def _derive_struct(model: type[BaseModel]) -> type[msgspec.Struct]:
    config = model.model_config
    if config.get("extra") != "forbid" or not config.get("strict"):
        raise DerivationError(f"{model.__name__}: only strict, closed models are derived")
    if model.__pydantic_decorators__.model_validators or (
        model.__pydantic_decorators__.field_validators
    ):
        raise DerivationError(f"{model.__name__}: validators do not translate")
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        if info.alias is not None and info.alias != name:
            raise DerivationError(f"{model.__name__}.{name}: aliases do not translate")
        annotation = _derive_type(info.annotation, info.metadata, f"{model.__name__}.{name}")
        if name in _REQUIRED_ON_WIRE or info.is_required():
            fields.append((name, annotation))
        elif info.default_factory is not None:
            factory = typing.cast(Callable[[], Any], info.default_factory)
            fields.append((name, annotation, msgspec.field(default_factory=factory)))
        else:
            fields.append((name, annotation, info.default))
    return msgspec.defstruct(
        model.__name__, fields, kw_only=True, forbid_unknown_fields=True, omit_defaults=True,
        frozen=True, gc=False,
    )


def _derive_type(tp: Any, metadata: list[Any], where: str) -> Any:
    if get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        inner: list[Any] = []
        for item in extra:
            inner.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        return _derive_type(base, [*inner, *metadata], where)
    is_enum = isinstance(tp, type) and issubclass(tp, enum.StrEnum)
    meta = _meta(metadata, where, enum_field=is_enum)
    origin = get_origin(tp)
    derived: Any
    if origin in (Union, types.UnionType):
        if meta is not None:
            raise DerivationError(f"{where}: constraints on a union do not translate")
        return Union[tuple(_derive_type(arm, [], where) for arm in get_args(tp))]  # noqa: UP007
    if origin is list:
        (item,) = get_args(tp)
        derived = list[_derive_type(item, [], where)]  # type: ignore[misc]
    elif origin is Literal or tp is type(None):
        derived = tp
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        derived = _derive_struct(tp)
    elif is_enum or tp in (int, float, str):
        derived = tp
    else:
        raise DerivationError(f"{where}: type {tp!r} does not translate")
    return derived if meta is None else Annotated[derived, meta]


def _meta(metadata: list[Any], where: str, *, enum_field: bool) -> msgspec.Meta | None:
    kwargs: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            kwargs["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            # msgspec's integer bounds stop at int64: a wider bound becomes int64's, stricter
            # than the model (what lies between goes to the models, and is rare).
            kwargs["le"] = min(item.le, _INT64_MAX) if isinstance(item.le, int) else item.le
        elif isinstance(item, annotated_types.MinLen):
            kwargs["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            kwargs["max_length"] = item.max_length
        elif type(item).__name__ == "_PydanticGeneralMetadata":
            for key, value in vars(item).items():
                if key == "pattern":
                    kwargs["pattern"] = _python_pattern(value)
                elif key not in ("strict", "allow_inf_nan") or value not in (True, False):
                    raise DerivationError(f"{where}: {key}={value!r} does not translate")
        elif isinstance(item, Strict):
            # Lax mode only changes what an enum takes from Python objects, not from JSON.
            if not item.strict and not enum_field:
                raise DerivationError(f"{where}: lax (strict=False) fields do not translate")
        else:
            raise DerivationError(f"{where}: constraint {item!r} does not translate")
    return msgspec.Meta(**kwargs) if kwargs else None


def _python_pattern(pattern: str) -> str:
    """The pattern for Python's ``re.search`` that matches what pydantic's Rust regex does.

    Both anchor ``^`` at the start, but Python's ``$`` also matches before a final newline
    ("10.0.0.1\\n" would pass): the end anchor becomes ``\\Z``.
    """
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        raise DerivationError(f"pattern {pattern!r}: only fully anchored patterns translate")
    if re.search(r"\\[dswbDSWB]", pattern):  # Unicode classes differ between the engines
        raise DerivationError(f"pattern {pattern!r}: character class escapes do not translate")
    return pattern[:-1] + r"\Z"


TelemetryStruct = derive_struct(TelemetryReport)
HeartbeatStruct = derive_struct(Heartbeat)
_JSON_DECODERS: dict[MessageKind, msgspec.json.Decoder[Any]] = {
    MessageKind.TELEMETRY: msgspec.json.Decoder(TelemetryStruct),
    MessageKind.HEARTBEAT: msgspec.json.Decoder(HeartbeatStruct),
}
_STRUCTS: dict[MessageKind, type[msgspec.Struct]] = {
    MessageKind.TELEMETRY: TelemetryStruct,
    MessageKind.HEARTBEAT: HeartbeatStruct,
}


def decode_ingest_message(data: bytes, content_type: ContentType | str, kind: MessageKind) -> Any:
    """A telemetry report or heartbeat of ``kind``: a derived struct, or the protocol's model
    when only the models take it.

    Raises:
        MessageRejectedError: as :func:`fleetguard.protocol.decode_message` would.
    """
    decoder = _JSON_DECODERS.get(kind)
    if decoder is None:
        raise ValueError("ingestion takes telemetry and heartbeats")
    if len(data) <= MAX_MESSAGE_BYTES:
        # The content type and CBOR's framing are checked as the codec checks them, first.
        json = parse_content_type(content_type) is ContentType.JSON
        try:
            if json:
                return decoder.decode(data)
            return msgspec.convert(parse_cbor(data), _STRUCTS[kind], strict=True)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass  # the models decide, and say why
    return decode_message(data, content_type, expect=kind)


def is_struct(message: object) -> bool:
    return isinstance(message, msgspec.Struct)


encode_json: Callable[[Any], bytes] = msgspec.json.Encoder().encode
