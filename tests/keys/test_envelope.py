"""Envelope encryption: secrets open only with the right key and the right owner."""

from __future__ import annotations

import os

import pytest

from fleetguard.keys import MasterKey, open_secret, rewrap_secret, seal_secret
from fleetguard.keys.errors import SecretDecryptionError


def _key() -> MasterKey:
    return MasterKey(os.urandom(32))


def test_sealed_secret_opens_with_its_key_and_context() -> None:
    key = _key()
    blob = seal_secret(key, b"seed", b"totp:1")
    assert b"seed" not in blob
    assert open_secret(key, blob, b"totp:1") == b"seed"


def test_secret_does_not_open_for_another_owner() -> None:
    key = _key()
    blob = seal_secret(key, b"seed", b"totp:1")
    with pytest.raises(SecretDecryptionError):
        open_secret(key, blob, b"totp:2")


def test_secret_does_not_open_under_another_master_key() -> None:
    blob = seal_secret(_key(), b"seed", b"totp:1")
    with pytest.raises(SecretDecryptionError, match="sealed under master key"):
        open_secret(_key(), blob, b"totp:1")


def test_flipped_ciphertext_bit_is_detected() -> None:
    key = _key()
    blob = bytearray(seal_secret(key, b"seed", b"ctx"))
    blob[-1] ^= 1
    with pytest.raises(SecretDecryptionError):
        open_secret(key, bytes(blob), b"ctx")


def test_rewrapped_secret_opens_only_under_the_new_key() -> None:
    old, new = _key(), _key()
    blob = rewrap_secret(old, new, seal_secret(old, b"seed", b"ctx"), b"ctx")
    assert open_secret(new, blob, b"ctx") == b"seed"
    with pytest.raises(SecretDecryptionError):
        open_secret(old, blob, b"ctx")


def test_master_key_repr_hides_the_material() -> None:
    key = _key()
    assert key.material.hex() not in repr(key)
