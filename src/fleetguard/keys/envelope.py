"""AES-256-GCM envelope encryption.

Each secret gets its own random data key; the data key is wrapped under the master
key. Rotating the master key therefore rewraps 60 bytes per secret and never touches
the secret itself. The associated data binds a sealed blob to its purpose (for
example ``totp:<operator id>``), so a blob copied onto another record does not open.

Wire layout (all lengths fixed except the ciphertext):
``b"FGE1" | master key id (8) | wrap nonce (12) | wrapped data key (48) | nonce (12) | ciphertext``
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetguard.keys.errors import SecretDecryptionError

_MAGIC = b"FGE1"
_KEY_ID_LEN = 8
_NONCE_LEN = 12
_WRAPPED_LEN = 32 + 16
_HEADER_LEN = len(_MAGIC) + _KEY_ID_LEN + _NONCE_LEN + _WRAPPED_LEN + _NONCE_LEN


@dataclass(frozen=True, slots=True, repr=False)
class MasterKey:
    """A 256-bit key; ``repr`` never shows the material."""

    material: bytes

    def __post_init__(self) -> None:
        if len(self.material) != 32:
            raise ValueError("a master key is exactly 32 bytes")

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(b"fleetguard-master-key-id" + self.material).digest()[:_KEY_ID_LEN]

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id.hex()})"


SealedSecret = bytes


def _wrap_aad(aad: bytes) -> bytes:
    return b"fleetguard-dek|" + aad


def seal_secret(master: MasterKey, plaintext: bytes, aad: bytes) -> SealedSecret:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_LEN)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
    wrap_nonce = os.urandom(_NONCE_LEN)
    wrapped = AESGCM(master.material).encrypt(wrap_nonce, data_key, _wrap_aad(aad))
    return _MAGIC + master.key_id + wrap_nonce + wrapped + nonce + ciphertext


def _split(blob: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    if len(blob) < _HEADER_LEN + 16 or not blob.startswith(_MAGIC):
        raise SecretDecryptionError("not a fleetguard sealed secret")
    pos = len(_MAGIC)
    key_id = blob[pos : pos + _KEY_ID_LEN]
    pos += _KEY_ID_LEN
    wrap_nonce = blob[pos : pos + _NONCE_LEN]
    pos += _NONCE_LEN
    wrapped = blob[pos : pos + _WRAPPED_LEN]
    pos += _WRAPPED_LEN
    nonce = blob[pos : pos + _NONCE_LEN]
    pos += _NONCE_LEN
    return key_id, wrap_nonce, wrapped, nonce, blob[pos:]


def _unwrap_data_key(master: MasterKey, blob: bytes, aad: bytes) -> tuple[bytes, bytes, bytes]:
    key_id, wrap_nonce, wrapped, nonce, ciphertext = _split(blob)
    if key_id != master.key_id:
        raise SecretDecryptionError(
            f"secret was sealed under master key {key_id.hex()}, not {master.key_id.hex()}"
        )
    try:
        data_key = AESGCM(master.material).decrypt(wrap_nonce, wrapped, _wrap_aad(aad))
    except InvalidTag as exc:
        raise SecretDecryptionError("sealed secret failed authentication") from exc
    return data_key, nonce, ciphertext


def open_secret(master: MasterKey, blob: SealedSecret, aad: bytes) -> bytes:
    data_key, nonce, ciphertext = _unwrap_data_key(master, blob, aad)
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise SecretDecryptionError("sealed secret failed authentication") from exc


def rewrap_secret(old: MasterKey, new: MasterKey, blob: SealedSecret, aad: bytes) -> SealedSecret:
    """Rewrap the data key under ``new``; the ciphertext of the secret stays as it is."""
    data_key, nonce, ciphertext = _unwrap_data_key(old, blob, aad)
    # Prove the whole blob opens before replacing anything.
    try:
        AESGCM(data_key).decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise SecretDecryptionError("sealed secret failed authentication") from exc
    wrap_nonce = os.urandom(_NONCE_LEN)
    wrapped = AESGCM(new.material).encrypt(wrap_nonce, data_key, _wrap_aad(aad))
    return _MAGIC + new.key_id + wrap_nonce + wrapped + nonce + ciphertext
