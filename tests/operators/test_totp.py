"""RFC 6238 TOTP with replay protection."""

from __future__ import annotations

import base64

from fleetguard.operators import totp

# RFC 6238 appendix B: the SHA-1 seed is ASCII "12345678901234567890".
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


def test_rfc6238_vectors_truncated_to_six_digits() -> None:
    # 8-digit vectors 94287082, 07081804, 14050471 for T = 59, 1111111109, 1111111111.
    assert totp.code_at_step(RFC_SECRET, 59 // 30) == "287082"
    assert totp.code_at_step(RFC_SECRET, 1111111109 // 30) == "081804"
    assert totp.code_at_step(RFC_SECRET, 1111111111 // 30) == "050471"


def test_code_is_accepted_once_per_step() -> None:
    now = 1_700_000_000.0
    step = totp.current_step(now)
    code = totp.code_at_step(RFC_SECRET, step)
    assert totp.matching_step(RFC_SECRET, code, last_used_step=0, now=now) == step
    assert totp.matching_step(RFC_SECRET, code, last_used_step=step, now=now) is None


def test_one_step_of_drift_is_tolerated_but_not_two() -> None:
    now = 1_700_000_000.0
    step = totp.current_step(now)
    assert totp.matching_step(RFC_SECRET, totp.code_at_step(RFC_SECRET, step - 1), last_used_step=0, now=now)
    assert totp.matching_step(RFC_SECRET, totp.code_at_step(RFC_SECRET, step - 2), last_used_step=0, now=now) is None


def test_malformed_codes_are_refused() -> None:
    for code in ("", "12345", "1234567", "abcdef"):
        assert totp.matching_step(RFC_SECRET, code, last_used_step=0) is None
