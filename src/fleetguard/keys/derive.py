"""Keys derived from the master key for one purpose each (HKDF-SHA256).

The master key itself only wraps data keys (see ``envelope``); anything else that needs a
key of the installation derives its own with a purpose label, so that one use can never
stand in for another and the raw master key is never used as a MAC or signing key.
Labels are versioned strings (``fleetguard/<purpose>/v1``); changing one changes the key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fleetguard.keys.envelope import MasterKey

_SALT = b"fleetguard-hkdf-salt/v1"


def derive_key(master: MasterKey, purpose: str, *, length: int = 32) -> bytes:
    """``length`` bytes for ``purpose``; the same master and purpose give the same bytes."""
    return hkdf_expand(master.material, purpose, length=length)


def hkdf_expand(key: bytes, purpose: str, *, length: int = 32) -> bytes:
    """HKDF-SHA256 of ``key`` for ``purpose`` (for keys below a derived key)."""
    if not purpose:
        raise ValueError("a derived key needs a purpose label")
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=_SALT, info=purpose.encode()
    ).derive(key)
