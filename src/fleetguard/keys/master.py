"""Loading and writing the master key: a 0600 file in the data dir, or the environment."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from fleetguard.core.config import Settings
from fleetguard.core.files import write_atomic
from fleetguard.keys.envelope import MasterKey
from fleetguard.keys.errors import MasterKeyMissingError


def _decode(text: str, source: str) -> MasterKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return MasterKey(raw)
    except (binascii.Error, ValueError) as exc:
        raise MasterKeyMissingError(
            f"the master key in {source} is not 32 bytes of base64"
        ) from exc


def load_master_key(settings: Settings) -> MasterKey:
    if settings.master_key_b64:
        return _decode(settings.master_key_b64, "FLEETGUARD_MASTER_KEY")
    path = settings.master_key_file
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise MasterKeyMissingError(
            f"no master key: {path} is missing and FLEETGUARD_MASTER_KEY is not set "
            "(run `fleetguard init`)"
        ) from exc
    return _decode(text, str(path))


def write_master_key_file(path: Path, key: MasterKey) -> None:
    """Write atomically with mode 0600 from the first byte."""
    write_atomic(path, base64.b64encode(key.material) + b"\n", mode=0o600)


def create_master_key_file(path: Path) -> MasterKey:
    key = MasterKey(os.urandom(32))
    write_master_key_file(path, key)
    return key
