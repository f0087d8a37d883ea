"""A device's detector state as compact bytes, and back.

The format: one version byte, then CBOR (flag 0x01) or zlib-compressed CBOR (0x02, used
when the CBOR exceeds :data:`COMPRESS_ABOVE` bytes: a device that churns through thousands
of addresses). Inside, positional arrays rather than named maps, features by their stable
names, and a threshold streak as ``[rule fingerprint, reports, since_ms]``: on decoding, a
streak is re-attached to the rule of the same id only if its definition is unchanged (the
fingerprint), as :func:`fleetguard.detect.evaluate` itself does across rule set versions.
A typical camera's state is a few hundred bytes.

Learned detectors (baselines, peers, models) give their own state as CBOR-able data
(:class:`~fleetguard.detect.pipeline.Detector`), kept under their name; a detector's
state is held decoded in memory and encoded only when persisted.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cbor2

from fleetguard.detect.features import DeviceFeatureState, Feature, Listener
from fleetguard.detect.pipeline import Detector
from fleetguard.detect.rules import RuleSet, RuleState, Streak, ThresholdRule

FORMAT_CBOR = 1
FORMAT_ZLIB = 2
COMPRESS_ABOVE = 1024


@dataclass(slots=True)
class StoredState:
    """What a device's state holds between reports (mutable: the service's own record)."""

    features: DeviceFeatureState | None = None
    rules: RuleState | None = None
    first_report_ms: int | None = None  # the first report detection saw (learning starts)
    detectors: dict[str, Any] = field(default_factory=dict)  # learned detectors' states
    pending_streaks: Mapping[str, tuple[str, int, int]] = field(default_factory=dict)


def rule_fingerprint(rule: ThresholdRule) -> str:
    """Stable across processes: a threshold rule holds only names and numbers."""
    text = repr((rule.id, rule.severity.value, rule.family.value, rule.feature.value,
                 rule.comparison.value, rule.value, rule.for_reports))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _features(state: DeviceFeatureState) -> list[Any]:
    return [
        state.boot_id, state.seq, state.collected_at_ms,
        {f.value: v for f, v in state.counters.items()},
        {name: list(values) for name, values in state.interfaces.items()},
        [[x.proto, x.port] for x in sorted(state.listeners)],
        list(state.known_addresses), list(state.known_ports),
        [[x.proto, x.port] for x in state.known_listeners], list(state.known_executables),
    ]


def _decode_features(data: list[Any]) -> DeviceFeatureState:
    (boot_id, seq, at_ms, counters, interfaces, listeners, addresses, ports, known_listeners,
     executables) = data
    return DeviceFeatureState(
        boot_id=str(boot_id), seq=int(seq), collected_at_ms=int(at_ms),
        counters=MappingProxyType({Feature(k): int(v) for k, v in counters.items()}),
        interfaces=MappingProxyType({
            str(k): (int(v[0]), int(v[1]), int(v[2]), int(v[3])) for k, v in interfaces.items()}),
        listeners=frozenset(Listener(str(p), int(n)) for p, n in listeners),
        known_addresses=MappingProxyType(dict.fromkeys(str(a) for a in addresses)),
        known_ports=MappingProxyType(dict.fromkeys(int(p) for p in ports)),
        known_listeners=MappingProxyType(
            dict.fromkeys(Listener(str(p), int(n)) for p, n in known_listeners)),
        known_executables=MappingProxyType(dict.fromkeys(str(e) for e in executables)),
    )


def _streaks(state: StoredState) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {
        rule_id: list(pending) for rule_id, pending in state.pending_streaks.items()}
    if state.rules is not None:
        for rule_id, streak in state.rules.streaks.items():
            out[rule_id] = [rule_fingerprint(streak.rule), streak.reports, streak.since_ms]
    return out


def encode_state(state: StoredState, detectors: Mapping[str, Detector] | None = None) -> bytes:
    """``state`` as bytes; each learned detector's state as that detector encodes it."""
    coders = detectors or {}
    body = cbor2.dumps([
        _features(state.features) if state.features is not None else None,
        _streaks(state), state.first_report_ms,
        {name: coders[name].encode_state(value) for name, value in state.detectors.items()
         if name in coders},
    ])
    if len(body) > COMPRESS_ABOVE:
        return bytes([FORMAT_ZLIB]) + zlib.compress(body, 6)
    return bytes([FORMAT_CBOR]) + body


def decode_state(blob: bytes, detectors: Mapping[str, Detector] | None = None) -> StoredState:
    """The state :func:`encode_state` made (ValueError if the bytes are not one); a learned
    detector no longer running is forgotten."""
    coders = detectors or {}
    if not blob or blob[0] not in (FORMAT_CBOR, FORMAT_ZLIB):
        raise ValueError("not an encoded detector state")
    body = zlib.decompress(blob[1:]) if blob[0] == FORMAT_ZLIB else blob[1:]
    try:
        features, streaks, first_ms, learned = cbor2.loads(body)
        return StoredState(
            features=_decode_features(features) if features is not None else None,
            first_report_ms=int(first_ms) if first_ms is not None else None,
            detectors={name: coders[name].decode_state(data)
                       for name, data in (learned or {}).items() if name in coders},
            pending_streaks={str(k): (str(v[0]), int(v[1]), int(v[2]))
                             for k, v in (streaks or {}).items()},
        )
    except (ValueError, TypeError, KeyError, cbor2.CBORDecodeError) as exc:
        raise ValueError(f"not an encoded detector state: {exc}") from None


def attach_streaks(state: StoredState, ruleset: RuleSet) -> None:
    """Turn decoded streaks into the rule state of ``ruleset`` (unchanged rules only)."""
    if not state.pending_streaks:
        return
    by_id = {r.id: r for r in ruleset.rules if isinstance(r, ThresholdRule)}
    streaks: dict[str, Streak] = dict(state.rules.streaks) if state.rules is not None else {}
    for rule_id, (fingerprint, reports, since_ms) in state.pending_streaks.items():
        rule = by_id.get(rule_id)
        if rule is not None and rule_fingerprint(rule) == fingerprint:
            streaks.setdefault(rule_id, Streak(rule, reports, since_ms))
    state.rules = RuleState(MappingProxyType(streaks))
    state.pending_streaks = {}


__all__ = ["StoredState", "attach_streaks", "decode_state", "encode_state", "rule_fingerprint"]
