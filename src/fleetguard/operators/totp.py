"""RFC 6238 TOTP (SHA-1, 6 digits, 30 s) with replay protection by time step."""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from urllib.parse import quote, urlencode

import segno

PERIOD = 30
DIGITS = 6
# One step either side absorbs clock drift between the phone and the server.
DRIFT_STEPS = 1
ISSUER = "fleetguard"


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret_b32: str) -> bytes:
    padded = secret_b32 + "=" * (-len(secret_b32) % 8)
    return base64.b32decode(padded, casefold=True)


def code_at_step(secret_b32: str, step: int) -> str:
    digest = hmac.new(_key(secret_b32), step.to_bytes(8, "big"), "sha1").digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // PERIOD)


def matching_step(
    secret_b32: str, code: str, *, last_used_step: int, now: float | None = None
) -> int | None:
    """The step the code belongs to, if valid and newer than the last one used; else None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    here = current_step(now)
    found = None
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at_step(secret_b32, step), code):
            found = step
    if found is None or found <= last_used_step:
        return None
    return found


def provisioning_uri(secret_b32: str, username: str) -> str:
    label = quote(ISSUER, safe="") + ":" + quote(username, safe="@")
    query = urlencode(
        {"secret": secret_b32, "issuer": ISSUER, "algorithm": "SHA1",
         "digits": DIGITS, "period": PERIOD}
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    return str(segno.make(uri, error="m").svg_inline(scale=4))
