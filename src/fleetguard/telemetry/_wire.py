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
from dataclasses import dataclass, field
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
_REMEMBERED = 65_536  # strings remembered as matching, per pattern


class DerivationError(TypeError):
    """A model uses a type or constraint the derivation does not translate."""


def derive_struct(model: type[BaseModel]) -> type[msgspec.Struct]:
    """A msgspec struct that accepts what ``model`` accepts from JSON, field for field.

    Patterns are the exception: they are checked after decoding, by :func:`check_patterns`.
    """
    return _derive_struct(model)


@dataclass(slots=True)
class _PatternCheck:
    """A string pattern, and the strings that already passed it.

    msgspec would call Python's ``re`` for every string (about 0.5 us; a gateway's report
    holds about 70 addresses). A fleet's addresses repeat from report to report, so the
    strings that passed are remembered (up to ``_REMEMBERED``) and a repeat costs a set
    lookup. Only strings that passed are remembered; lengths are still msgspec's to check.
    """

    search: Callable[[str], object]
    passed: set[str] = field(default_factory=set)

    def admit(self, value: str) -> None:
        if self.search(value) is None:
            raise msgspec.ValidationError("a string does not match its pattern")
        if len(self.passed) >= _REMEMBERED:
            self.passed.clear()
        self.passed.add(value)


@dataclass(frozen=True, slots=True)
class _Checks:
    """The pattern checks of a struct: its own fields, and fields holding such structs."""

    own: tuple[tuple[str, _PatternCheck], ...]
    nested: tuple[tuple[str, bool, _Checks], ...]  # (field, holds a list, the checks)


_CHECKS: dict[type, _Checks] = {}


def check_patterns(message: msgspec.Struct) -> None:
    """Check the pattern fields of a decoded struct (and of the structs it holds).

    Raises:
        msgspec.ValidationError: a string does not match its pattern.
    """
    checks = _CHECKS.get(type(message))
    if checks is not None:
        _walk(message, checks)


def _walk(obj: object, checks: _Checks) -> None:
    _admit(obj, checks.own)
    for name, many, inner in checks.nested:
        value = getattr(obj, name)
        if value is None:
            continue
        if not many:
            _walk(value, inner)
        elif inner.nested:
            for item in value:
                _walk(item, inner)
        else:  # a list of leaf structs (addresses of connections): the hot loop, inlined
            for item in value:
                for field_name, check in inner.own:
                    text = getattr(item, field_name)
                    if text is not None and text not in check.passed:
                        check.admit(text)


def _admit(obj: object, own: tuple[tuple[str, _PatternCheck], ...]) -> None:
    for name, check in own:
        value = getattr(obj, name)
        if value is not None and value not in check.passed:
            check.admit(value)


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
    own: list[tuple[str, _PatternCheck]] = []
    nested: list[tuple[str, bool, _Checks]] = []
    for name, info in model.model_fields.items():
        if info.alias is not None and info.alias != name:
            raise DerivationError(f"{model.__name__}.{name}: aliases do not translate")
        patterns: list[_PatternCheck] = []
        annotation = _derive_type(info.annotation, info.metadata, f"{model.__name__}.{name}",
                                  patterns, finite=config.get("allow_inf_nan") is False)
        own.extend((name, check) for check in patterns)
        held = _held_checks(annotation)
        if held is not None:
            nested.append((name, *held))
        if name in _REQUIRED_ON_WIRE or info.is_required():
            fields.append((name, annotation))
        elif info.default_factory is not None:
            factory = typing.cast(Callable[[], Any], info.default_factory)
            fields.append((name, annotation, msgspec.field(default_factory=factory)))
        else:
            fields.append((name, annotation, info.default))
    struct = msgspec.defstruct(
        model.__name__, fields, kw_only=True, forbid_unknown_fields=True, omit_defaults=True,
        frozen=True, gc=False,
    )
    if own or nested:
        _CHECKS[struct] = _Checks(tuple(own), tuple(nested))
    return struct


def _held_checks(annotation: Any) -> tuple[bool, _Checks] | None:
    """(a list?, the checks) of a field holding structs that have pattern checks: a struct,
    a list of them, either of them optional or constrained."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _held_checks(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        held = [h for arm in get_args(annotation) if (h := _held_checks(arm)) is not None]
        return held[0] if held else None
    if origin is list:
        (item,) = get_args(annotation)
        inner = _held_checks(item)
        return (True, inner[1]) if inner is not None and not inner[0] else None
    checks = _CHECKS.get(annotation) if isinstance(annotation, type) else None
    return (False, checks) if checks is not None else None


def _derive_type(
    tp: Any, metadata: list[Any], where: str, patterns: list[_PatternCheck] | None,
    *, finite: bool,
) -> Any:
    """``patterns`` collects the field's pattern check (None: a pattern cannot be checked
    here, as in a list of strings, and does not translate). ``finite``: the model refuses
    infinities and NaN."""
    if get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        inner: list[Any] = []
        for item in extra:
            inner.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        return _derive_type(base, [*inner, *metadata], where, patterns, finite=finite)
    is_enum = isinstance(tp, type) and issubclass(tp, enum.StrEnum)
    constraints = _constraints(metadata, where, enum_field=is_enum)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        arms_in = get_args(tp)
        if constraints:
            # Pydantic puts the constraints of an optional field on the value it may hold.
            values = [arm for arm in arms_in if arm is not type(None)]
            if len(values) != 1 or len(arms_in) != 2:
                raise DerivationError(f"{where}: constraints on a union do not translate")
            held = _derive_type(values[0], metadata, where, patterns, finite=finite)
            return Union[held, None]  # noqa: UP007
        arms = tuple(_derive_type(arm, [], where, patterns, finite=finite)
                     for arm in arms_in)
        return Union[arms]  # noqa: UP007
    derived = _derive_plain(tp, where, finite=finite)
    if derived is float and finite and not {"ge", "le"} <= constraints.keys():
        # msgspec takes inf and NaN from CBOR where the model would not; both bounds refuse
        # them (NaN fails every comparison).
        raise DerivationError(f"{where}: a float the model keeps finite needs both bounds")
    pattern = constraints.pop("pattern", None)
    if pattern is not None:
        if derived is not str or patterns is None or patterns:
            raise DerivationError(f"{where}: a pattern translates on a string field only")
        patterns.append(_PatternCheck(re.compile(pattern).search))
    return Annotated[derived, msgspec.Meta(**constraints)] if constraints else derived


def _derive_plain(tp: Any, where: str, *, finite: bool) -> Any:
    """A type that is not a union (nor annotated), as msgspec takes it."""
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp)
        return list[_derive_type(item, [], where, None, finite=finite)]  # type: ignore[misc]
    if origin is Literal or tp is type(None):
        return tp
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _derive_struct(tp)
    if (isinstance(tp, type) and issubclass(tp, enum.StrEnum)) or tp in (bool, int, float, str):
        return tp
    raise DerivationError(f"{where}: type {tp!r} does not translate")


def _constraints(metadata: list[Any], where: str, *, enum_field: bool) -> dict[str, Any]:
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
            kwargs.update(_general_constraints(vars(item), where))
        elif isinstance(item, Strict):
            # Lax mode only changes what an enum takes from Python objects, not from JSON.
            if not item.strict and not enum_field:
                raise DerivationError(f"{where}: lax (strict=False) fields do not translate")
        else:
            raise DerivationError(f"{where}: constraint {item!r} does not translate")
    return kwargs


def _general_constraints(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Pydantic's general metadata: a pattern translates, strictness is the model's own."""
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key == "pattern":
            kwargs["pattern"] = _python_pattern(value)
        elif key not in ("strict", "allow_inf_nan") or value not in (True, False):
            raise DerivationError(f"{where}: {key}={value!r} does not translate")
    return kwargs


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
                message = decoder.decode(data)
            else:
                message = msgspec.convert(parse_cbor(data), _STRUCTS[kind], strict=True)
            check_patterns(message)
            return message
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass  # the models decide, and say why
    return decode_message(data, content_type, expect=kind)


encode_json: Callable[[Any], bytes] = msgspec.json.Encoder().encode
