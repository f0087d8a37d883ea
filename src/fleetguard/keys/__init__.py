"""Where secrets live: the master key, AES-256-GCM envelope encryption under it, and keys
derived from it for one purpose each (HKDF)."""

from fleetguard.keys.derive import derive_key, hkdf_expand
from fleetguard.keys.envelope import (
    MasterKey,
    SealedSecret,
    open_secret,
    rewrap_secret,
    seal_secret,
)
from fleetguard.keys.master import (
    create_master_key_file,
    load_master_key,
    write_master_key_file,
)

__all__ = [
    "MasterKey",
    "SealedSecret",
    "create_master_key_file",
    "derive_key",
    "hkdf_expand",
    "load_master_key",
    "open_secret",
    "rewrap_secret",
    "seal_secret",
    "write_master_key_file",
]
